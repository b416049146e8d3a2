import { type Logger, pino } from 'pino'
import type { ConfluenceError } from '../../services/worker/src/confluence/errors.ts'

// What the Confluence client tests catch: the log lines a client writes, and the error it rejects
// with.

/** A debug-level logger that keeps every line it writes (one JSON object each) in `lines`. */
export function captureLog(): { log: Logger; lines: string[] } {
  const lines: string[] = []
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) })
  return { log, lines }
}

/** The error `promise` rejects with; throws if it resolves instead. */
export async function failure(promise: Promise<unknown>): Promise<ConfluenceError> {
  try {
    await promise
  } catch (err) {
    return err as ConfluenceError
  }
  throw new Error('expected a rejection')
}

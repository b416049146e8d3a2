import { AppError, ErrorCode } from '@confluence-bot/shared'
import { countOllamaError } from './metrics.ts'

// Relays an NDJSON stream from Ollama to a client as bytes arrive. Lines are found by byte
// (0x0A never occurs inside a multi-byte UTF-8 sequence), so a line split across TCP packets is
// reassembled and an HTML-escaped line is passed through untouched. A line that may end the
// stream is parsed to decide (see classify); every line but a rewritten terminal or error line
// is forwarded as the same bytes. The relay guarantees the client never gets a silently
// truncated answer: the stream ends with a terminal line (`done:true`, `status:"success"` or an
// `{error, message}` line) or gains one.

const NL = 0x0a

export type ParsedLine = Record<string, unknown>

export type RelayOptions = {
  /** Lines to write before the first upstream line. */
  prelude?: readonly string[]
  /** Sees each data line (not the terminal or an error line) as it is forwarded. */
  onData?: (line: Buffer) => void
  /** Rewrites the terminal success line (`done:true` / `status:"success"`); default keeps it. */
  onTerminal?: (line: ParsedLine) => ParsedLine
  /**
   * Called once if the upstream stream ends without a terminal line (not when the api's own
   * ANSWER_MAX_MS stopped it: that line is `answer_too_long`); returns the message.
   */
  interruptedMessage: (reason: string) => string
  /** True when the relay was stopped on purpose (client went away): emit nothing more. */
  isAborted: () => boolean
  /** Hides secrets in an upstream error's text before it is passed on (default: unchanged). */
  scrub?: (text: string) => string
  /** Writes the line that ends a failed stream (default `{error: code, message}`; /ollama writes Ollama's `{error: message}`). */
  errorLine?: (code: string, message: string) => string
}

// A line can only be terminal or an error if it holds one of these byte sequences: `done:true`
// needs the literal `true` (JSON literals have no escaped form), `status:"success"` the word
// `success` and an `error` key the word `error`, unless a string spells letters with a `\u`
// escape (`"d\u006fne"`; the other escapes never yield a letter). A line with none of them is
// data without parsing: most token lines and all pull progress lines. Every other line is parsed,
// so spacing, key order and escapes cannot hide a terminal line.
// The filter only saves parsing: without it every line is parsed and classified the same, so its
// mutants change no output (equivalent; `pnpm bench mutation` leaves them out).
// Stryker disable next-line all
const NEEDLES = ['true', 'success', 'error', '\\u'].map((needle) => Buffer.from(needle))

const DATA = { kind: 'data' } as const
type Line = typeof DATA | { kind: 'terminal' | 'error'; parsed: ParsedLine }

function classify(line: Buffer): Line {
  // Stryker disable next-line ConditionalExpression: the filter above
  if (!NEEDLES.some((needle) => line.includes(needle))) return DATA
  let parsed: unknown
  try {
    parsed = JSON.parse(line.toString('utf8'))
  } catch {
    return DATA
  }
  // A line that is not an object (a number, a string, `true`) has no error, done or status.
  if (typeof parsed !== 'object' || parsed === null) return DATA
  const obj = parsed as ParsedLine
  if (typeof obj.error === 'string') return { kind: 'error', parsed: obj }
  if (obj.done === true || obj.status === 'success') return { kind: 'terminal', parsed: obj }
  return DATA
}

const NEWLINE = Buffer.from('\n')

/**
 * The answer text a line carries: a chat token's `message.content` or a generate token's
 * `response` ('' for anything else, a line that is not JSON included). Grounded answers collect
 * it to see which excerpts the answer cites.
 */
export function tokenTextOf(line: Buffer | ParsedLine): string {
  let parsed: unknown = line
  if (Buffer.isBuffer(line)) {
    try {
      parsed = JSON.parse(line.toString('utf8'))
    } catch {
      return ''
    }
  }
  const value = parsed as { message?: { content?: unknown }; response?: unknown } | null
  const text = value?.message?.content ?? value?.response
  return typeof text === 'string' ? text : ''
}

/** One NDJSON line: the value as JSON, then a newline. */
export const ndjsonLine = (value: unknown): string => `${JSON.stringify(value)}\n`

export const errorLine = (code: string, message: string): string =>
  ndjsonLine({ error: code, message })

export async function* relayNdjson(
  upstream: AsyncIterable<Buffer>,
  options: RelayOptions,
): AsyncGenerator<Buffer | string> {
  if (options.prelude && options.prelude.length > 0) yield options.prelude.join('')
  let carry: Buffer = Buffer.alloc(0)
  let ended = false
  const writeError = options.errorLine ?? errorLine

  const handle = (line: Buffer): Buffer => {
    const found = classify(line)
    if (found.kind === 'data') {
      options.onData?.(line)
      return line
    }
    ended = true
    const { parsed } = found
    if (found.kind === 'error') {
      const text = String(parsed.error)
      const message = options.scrub ? options.scrub(text) : text
      return Buffer.from(writeError(ErrorCode.ollamaError, message).trimEnd())
    }
    return options.onTerminal ? Buffer.from(JSON.stringify(options.onTerminal(parsed))) : line
  }

  const emitLines = (buf: Buffer): Buffer[] => {
    const out: Buffer[] = []
    let start = 0
    let idx = buf.indexOf(NL, start)
    while (idx !== -1) {
      const line = buf.subarray(start, idx)
      if (ended) return out // nothing is read past a terminal line, as Ollama's clients do
      if (line.length > 0) out.push(handle(line), NEWLINE)
      start = idx + 1
      idx = buf.indexOf(NL, start)
    }
    carry = Buffer.from(buf.subarray(start))
    return out
  }

  let failure: Error | undefined
  try {
    for await (const chunk of upstream) {
      // Stryker disable next-line ConditionalExpression,EqualityOperator: saves a copy only
      const buf = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk
      const out = emitLines(buf)
      if (out.length > 0) yield Buffer.concat(out)
      // Stop at once: waiting for one more chunk would hold the client's answer open until the
      // upstream sends or closes. Leaving the loop also closes the upstream body.
      if (ended) break
    }
  } catch (err) {
    failure = err as Error
  }
  if (options.isAborted()) return
  if (!ended && failure === undefined) {
    // A last line without its newline (Ollama's single-object replies end this way).
    const out = emitLines(Buffer.concat([carry, NEWLINE]))
    if (ended) yield Buffer.concat(out)
  }
  if (ended) return
  // Only whole lines were forwarded, so the client's stream is at a line boundary here.
  if (failure instanceof AppError && failure.code === ErrorCode.answerTooLong) {
    // The api's own ANSWER_MAX_MS stopped the answer (lib/ollama-upstream.ts): no fault of
    // Ollama's, named as the limit it is.
    yield writeError(failure.code, failure.message)
    return
  }
  countOllamaError('stream_cut')
  const reason = failure?.message ?? 'the upstream stream ended early'
  yield writeError(ErrorCode.ollamaStreamInterrupted, options.interruptedMessage(reason))
}

import { ErrorCode } from '@confluence-bot/shared'

// Relays an NDJSON stream from Ollama to a client as bytes arrive. Lines are found by byte
// (0x0A never occurs inside a multi-byte UTF-8 sequence), so a line split across TCP packets is
// reassembled and an HTML-escaped line is passed through untouched. Only the lines a caller asks
// to rewrite are parsed; every other line is forwarded as the same bytes. The relay guarantees
// the client never gets a silently truncated answer: the stream ends with a terminal line
// (`done:true`, `status:"success"` or an `{error, message}` line) or gains one.

const NL = 0x0a

export type ParsedLine = Record<string, unknown>

export type RelayOptions = {
  /** Lines to write before the first upstream line. */
  prelude?: readonly string[]
  /** Rewrites the terminal success line (`done:true` / `status:"success"`); default keeps it. */
  onTerminal?: (line: ParsedLine) => ParsedLine
  /** Called once if the upstream stream ends without a terminal line; returns the message. */
  interruptedMessage: (reason: string) => string
  /** True when the relay was stopped on purpose (client went away): emit nothing more. */
  isAborted: () => boolean
}

const DONE = Buffer.from('"done":true')
const SUCCESS = Buffer.from('"status":"success"')
const ERROR = Buffer.from('"error"')

type Kind = 'data' | 'terminal' | 'error'

function classify(line: Buffer): { kind: Kind; parsed?: ParsedLine } {
  // Cheap byte checks first: a key with unescaped quotes can only be a real JSON key, since
  // quotes inside strings are escaped. Parse only to confirm a candidate at the top level.
  const maybeTerminal = line.includes(DONE) || line.includes(SUCCESS)
  const maybeError = line.includes(ERROR)
  if (!maybeTerminal && !maybeError) return { kind: 'data' }
  let parsed: unknown
  try {
    parsed = JSON.parse(line.toString('utf8'))
  } catch {
    return { kind: 'data' }
  }
  if (parsed === null || typeof parsed !== 'object') return { kind: 'data' }
  const obj = parsed as ParsedLine
  if (typeof obj.error === 'string') return { kind: 'error', parsed: obj }
  if (obj.done === true || obj.status === 'success') return { kind: 'terminal', parsed: obj }
  return { kind: 'data' }
}

export const errorLine = (code: string, message: string): string =>
  `${JSON.stringify({ error: code, message })}\n`

export async function* relayNdjson(
  upstream: AsyncIterable<Buffer>,
  options: RelayOptions,
): AsyncGenerator<Buffer | string> {
  if (options.prelude && options.prelude.length > 0) yield options.prelude.join('')
  let carry: Buffer = Buffer.alloc(0)
  let ended = false

  const handle = (line: Buffer): Buffer | string => {
    const { kind, parsed } = classify(line)
    if (kind === 'data' || parsed === undefined) return line
    ended = true
    if (kind === 'error') {
      return errorLine(ErrorCode.ollamaError, String(parsed.error)).trimEnd()
    }
    return options.onTerminal ? JSON.stringify(options.onTerminal(parsed)) : line
  }

  const emitLines = (buf: Buffer): Array<Buffer | string> => {
    const out: Array<Buffer | string> = []
    let start = 0
    let idx = buf.indexOf(NL, start)
    while (idx !== -1) {
      const line = buf.subarray(start, idx)
      if (ended) return out // nothing is read past a terminal line, as Ollama's clients do
      if (line.length > 0) out.push(handle(line), '\n')
      start = idx + 1
      idx = buf.indexOf(NL, start)
    }
    carry = Buffer.from(buf.subarray(start))
    return out
  }

  let failure: string | undefined
  try {
    for await (const chunk of upstream) {
      if (ended) break
      const buf = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk
      const out = emitLines(buf)
      if (out.length > 0) yield joinAll(out)
    }
  } catch (err) {
    if (options.isAborted()) return
    failure = (err as Error).message
  }
  if (options.isAborted()) return
  if (!ended && carry.length > 0 && failure === undefined) {
    // A last line without its newline (Ollama's single-object replies end this way).
    const out = emitLines(Buffer.concat([carry, Buffer.from('\n')]))
    if (ended && out.length > 0) yield joinAll(out)
  }
  if (!ended) {
    // Only whole lines were forwarded, so the client's stream is at a line boundary here.
    const reason = failure ?? 'the upstream stream ended early'
    yield errorLine(ErrorCode.ollamaStreamInterrupted, options.interruptedMessage(reason))
  }
}

const toBuf = (part: Buffer | string): Buffer =>
  typeof part === 'string' ? Buffer.from(part) : part

function joinAll(out: Array<Buffer | string>): Buffer {
  return Buffer.concat(out.map(toBuf))
}

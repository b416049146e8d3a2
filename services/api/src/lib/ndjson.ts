import { ErrorCode } from '@confluence-bot/shared'

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
  /** Rewrites the terminal success line (`done:true` / `status:"success"`); default keeps it. */
  onTerminal?: (line: ParsedLine) => ParsedLine
  /** Called once if the upstream stream ends without a terminal line; returns the message. */
  interruptedMessage: (reason: string) => string
  /** True when the relay was stopped on purpose (client went away): emit nothing more. */
  isAborted: () => boolean
  /** Hides secrets in an upstream error's text before it is passed on (default: unchanged). */
  scrub?: (text: string) => string
}

// A line can only be terminal or an error if it holds one of these byte sequences: `done:true`
// needs the literal `true` (JSON literals have no escaped form), `status:"success"` the word
// `success` and an `error` key the word `error`, unless a string spells letters with a `\u`
// escape (`"d\u006fne"`; the other escapes never yield a letter). A line with none of them is
// data without parsing: most token lines and all pull progress lines. Every other line is parsed,
// so spacing, key order and escapes cannot hide a terminal line.
const NEEDLES = ['true', 'success', 'error', '\\u'].map((needle) => Buffer.from(needle))

type Kind = 'data' | 'terminal' | 'error'

function classify(line: Buffer): { kind: Kind; parsed?: ParsedLine } {
  if (!NEEDLES.some((needle) => line.includes(needle))) return { kind: 'data' }
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
      const text = String(parsed.error)
      return errorLine(ErrorCode.ollamaError, options.scrub ? options.scrub(text) : text).trimEnd()
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
      const buf = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk
      const out = emitLines(buf)
      if (out.length > 0) yield joinAll(out)
      // Stop at once: waiting for one more chunk would hold the client's answer open until the
      // upstream sends or closes. Leaving the loop also closes the upstream body.
      if (ended) break
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

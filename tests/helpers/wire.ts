import { Readable } from 'node:stream'
import { request } from 'undici'

// A real client over a real TCP socket, with a deadline: what `app.inject` cannot show (a request
// whose body was read reports `destroyed`, sockets close, answers that never come).

/** How long a test waits for a whole answer: an error answer that takes longer is a hang. */
export const WIRE_DEADLINE_MS = 3_000

export type WireRequest = {
  method?: string
  headers?: Record<string, string>
  /** Sent as is, with its Content-Length, as curl and the SDKs send a body; chunked when an iterable. */
  body?: string | Buffer | AsyncIterable<Buffer>
  /** The deadline for the whole exchange (headers and body). */
  deadlineMs?: number
}

export type WireAnswer = {
  status: number
  /** The Content-Type header, '' when absent. */
  type: string
  text: string
  /** The parsed JSON body, or undefined when the body is not JSON. */
  json: unknown
  /** Time from sending the request to the end of the answer. */
  ms: number
}

/**
 * Sends one request with undici and reads the whole answer; rejects with a message naming the
 * request when no complete answer arrives within the deadline.
 */
export async function wire(url: string, options: WireRequest = {}): Promise<WireAnswer> {
  const deadlineMs = options.deadlineMs ?? WIRE_DEADLINE_MS
  const method = options.method ?? 'GET'
  const started = performance.now()
  try {
    const res = await request(url, {
      method: method as 'GET',
      headers: options.headers,
      body:
        typeof options.body === 'string' ||
        Buffer.isBuffer(options.body) ||
        options.body === undefined
          ? options.body
          : Readable.from(options.body),
      headersTimeout: deadlineMs,
      bodyTimeout: deadlineMs,
      signal: AbortSignal.timeout(deadlineMs),
    })
    const text = await res.body.text()
    const ms = performance.now() - started
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    const type = res.headers['content-type']
    return { status: res.statusCode, type: typeof type === 'string' ? type : '', text, json, ms }
  } catch (err) {
    const ms = Math.round(performance.now() - started)
    throw new Error(
      `${method} ${url}: no complete answer (${(err as Error).name}: ${(err as Error).message}) after ${ms} ms`,
      { cause: err },
    )
  }
}

/** JSON request headers, plus an API key when given. */
export const jsonHeaders = (key?: string): Record<string, string> => ({
  'content-type': 'application/json',
  ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
})

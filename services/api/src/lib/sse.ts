import { Readable } from 'node:stream'
import type { FastifyReply } from 'fastify'

// Server-sent events as OpenAI streams them: `data: <json>` events, no `event:` or `id:` lines,
// the stream closed by `data: [DONE]` when the answer is complete (and only then).

/** One event carrying `value` as JSON (JSON never holds a raw newline, so one data line). */
export const sseEvent = (value: unknown): string => `data: ${JSON.stringify(value)}\n\n`

/** The event that says the answer is complete. */
export const SSE_DONE = 'data: [DONE]\n\n'

/** Sends events as they are produced: no buffering, no compression, no caching. */
export function sendSse(reply: FastifyReply, events: AsyncIterable<string> | Iterable<string>) {
  return reply
    .header('content-type', 'text/event-stream; charset=utf-8')
    .header('cache-control', 'no-cache')
    .header('x-accel-buffering', 'no')
    .send(Readable.from(events, { objectMode: false }))
}

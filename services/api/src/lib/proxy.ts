import { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'

/**
 * An AbortController that fires when the client goes away before its answer is complete, so
 * the upstream request to Ollama is cancelled too (Ollama then stops generating or loading).
 */
export function abortOnClientGone(request: FastifyRequest, reply: FastifyReply): AbortController {
  const controller = new AbortController()
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) {
      request.log.info('client went away; cancelling the upstream request')
      controller.abort(new Error('client closed the connection'))
    }
  })
  return controller
}

/** Sends an NDJSON stream as it is produced: no buffering, no compression. */
export function sendNdjson(
  reply: FastifyReply,
  lines: AsyncIterable<Buffer | string> | Iterable<string>,
) {
  return reply
    .header('content-type', 'application/x-ndjson')
    .header('cache-control', 'no-cache')
    .header('x-accel-buffering', 'no')
    .send(Readable.from(lines, { objectMode: false }))
}

/** The last line an NDJSON producer writes (`{}` if none), read without keeping the others. */
export async function lastLine(lines: AsyncIterable<Buffer | string>): Promise<string> {
  let last = '{}'
  for await (const part of lines) {
    // The relay writes whole, non-empty lines.
    const text = part.toString().trimEnd()
    last = text.slice(text.lastIndexOf('\n') + 1)
  }
  return last
}

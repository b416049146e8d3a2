import { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'

/**
 * Calls `closed` once, when the request's response has closed: with `true` if the whole answer
 * was written, `false` if the client went away first. Node emits `close` on the response when
 * its connection ends, except for a pipelined request whose response was still queued behind
 * another: that one never hears, so the connection's own `close` counts too. Gone already
 * (while hooks waited), it is called at once.
 */
export function onceClosed(
  request: FastifyRequest,
  reply: FastifyReply,
  closed: (finished: boolean) => void,
): void {
  const socket = request.raw.socket
  let called = false
  const call = () => {
    if (called) return
    called = true
    socket.off('close', call)
    closed(reply.raw.writableFinished)
  }
  if (reply.raw.destroyed || socket.destroyed) {
    call()
    return
  }
  reply.raw.once('close', call)
  socket.once('close', call)
}

/**
 * An AbortController that fires when the client goes away before its answer is complete, so
 * the upstream request to Ollama is cancelled too (Ollama then stops generating or loading).
 */
export function abortOnClientGone(request: FastifyRequest, reply: FastifyReply): AbortController {
  const controller = new AbortController()
  onceClosed(request, reply, (finished) => {
    if (finished) return
    request.log.info('client went away; cancelling the upstream request')
    controller.abort(new Error('client closed the connection'))
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

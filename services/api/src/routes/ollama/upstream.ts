import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { relayNdjson } from '../../lib/ndjson.ts'
import { notAnAnswer, type UpstreamResponse } from '../../lib/ollama-upstream.ts'
import { abortOnClientGone, sendNdjson } from '../../lib/proxy.ts'

// Plain models pass through /ollama untouched: the client's body goes to Ollama as it was
// parsed, and Ollama's answer comes back as its own bytes. A stream is relayed line by line as
// it arrives (never buffered) and always ends with Ollama's `done:true` or an `{error}` line in
// Ollama's shape, so a cut stream fails in the client instead of looking like a short answer.

/** The line that ends a failed stream, as Ollama writes one: `{"error":"…"}`. */
export const ollamaErrorLine = (_code: string, message: string): string =>
  `${JSON.stringify({ error: message })}\n`

/** True when the bytes are one JSON object (what every non-streamed Ollama answer is). */
function isObject(body: Buffer): boolean {
  try {
    return Object.prototype.toString.call(JSON.parse(body.toString('utf8'))) === '[object Object]'
  } catch {
    return false
  }
}

export function createPassThrough(fastify: FastifyInstance) {
  const { ollama } = fastify

  const interrupted = (reason: string) =>
    `The answer from Ollama at ${ollama.url} stopped before it was complete (${reason})`

  /** Ollama's JSON answer to the client as its bytes; an error status is Ollama's error. */
  async function sendObject(reply: FastifyReply, upstream: UpstreamResponse) {
    if (upstream.statusCode >= 400) throw await ollama.error(upstream)
    const body = await ollama.bytes(upstream)
    if (!isObject(body)) throw notAnAnswer(ollama.url, body)
    return reply.type('application/json; charset=utf-8').send(body)
  }

  /** An Ollama stream relayed as it arrives, ended by `done:true` or an `{error}` line. */
  function relayStream(reply: FastifyReply, upstream: UpstreamResponse, signal: AbortSignal) {
    return sendNdjson(
      reply,
      relayNdjson(upstream.body, {
        interruptedMessage: interrupted,
        isAborted: () => signal.aborted,
        scrub: ollama.scrub,
        errorLine: ollamaErrorLine,
      }),
    )
  }

  /**
   * POSTs the body to the same path on Ollama and answers as Ollama did: a stream when Ollama
   * streams (it decides: `stream` absent means true, and a load reply is one object even then),
   * else its one object. A client that goes away cancels the upstream request.
   */
  async function forward(
    request: FastifyRequest,
    reply: FastifyReply,
    path: string,
    body: unknown,
  ) {
    const abort = abortOnClientGone(request, reply)
    const upstream = await ollama.post(path, body, abort.signal)
    if (String(upstream.headers['content-type']).includes('application/x-ndjson')) {
      return relayStream(reply, upstream, abort.signal)
    }
    return sendObject(reply, upstream)
  }

  return { sendObject, relayStream, forward, interrupted }
}

import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { relayNdjson } from '../../lib/ndjson.ts'
import { notAnAnswer } from '../../lib/ollama-upstream.ts'
import { abortOnClientGone, sendNdjson } from '../../lib/proxy.ts'
import { errorResponses } from '../../schemas/common.ts'
import { GenerateRequestSchema, GenerateResponseSchema } from '../../schemas/generate.ts'

const SPACE = new Set([0x20, 0x09, 0x0a, 0x0d])

/**
 * True when the body starts with `{` and ends with `}` past white space: an Ollama answer does,
 * another server's page does not. The bytes are read in place, not copied or parsed.
 */
function looksLikeObject(body: Buffer): boolean {
  let start = 0
  let end = body.length - 1
  while (start < end && SPACE.has(body[start] as number)) start++
  while (end > start && SPACE.has(body[end] as number)) end--
  return body[start] === 0x7b && body[end] === 0x7d
}

const generate: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post(
    '/generate',
    {
      schema: {
        tags: ['chat'],
        summary: 'Single-turn completion',
        description:
          "Answers Ollama's generate object; with `stream:true`, NDJSON lines as Ollama writes " +
          'them, ending with `done:true` (or `{error, message}` on a failure).',
        body: GenerateRequestSchema,
        response: {
          200: {
            description: "Ollama's answer",
            content: {
              'application/json': { schema: GenerateResponseSchema },
              'application/x-ndjson': { schema: GenerateResponseSchema },
            },
          },
          ...errorResponses(400, 401, 404, 413, 415, 502, 503),
        },
      },
    },
    async (request, reply) => {
      const stream = request.body.stream === true
      const model = request.body.model ?? fastify.config.CHAT_MODEL
      const abort = abortOnClientGone(request, reply)
      const upstream = await fastify.ollama.post(
        '/api/generate',
        { ...request.body, model, stream },
        abort.signal,
      )
      if (upstream.statusCode >= 400) throw await fastify.ollama.error(upstream)
      if (!stream) {
        // Ollama writes a non-streamed answer in one piece when it is done: its bytes go to the
        // client untouched, as one buffer (cheaper than piping a stream; bench/gateway).
        const answer = await fastify.ollama.bytes(upstream)
        if (!looksLikeObject(answer)) throw notAnAnswer(fastify.ollama.url, answer)
        return reply.type('application/json; charset=utf-8').send(answer as never)
      }
      return sendNdjson(
        reply,
        relayNdjson(upstream.body, {
          interruptedMessage: (reason) =>
            `The answer from Ollama at ${fastify.ollama.url} stopped before it was complete (${reason})`,
          isAborted: () => abort.signal.aborted,
          scrub: fastify.ollama.scrub,
        }),
      )
    },
  )
}

export default generate

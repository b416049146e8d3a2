import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { relayNdjson } from '../../lib/ndjson.ts'
import { abortOnClientGone, sendNdjson } from '../../lib/proxy.ts'
import { errorResponses } from '../../schemas/common.ts'
import { GenerateRequestSchema, GenerateResponseSchema } from '../../schemas/generate.ts'

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
        const answer = Buffer.from(await upstream.body.arrayBuffer())
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

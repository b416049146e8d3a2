import { AppError, ErrorCode } from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { relayNdjson } from '../../lib/ndjson.ts'
import { abortOnClientGone, lastLine, sendNdjson } from '../../lib/proxy.ts'
import { errorResponses } from '../../schemas/common.ts'
import { PullProgressSchema, PullRequestSchema } from '../../schemas/models.ts'

const pull: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post(
    '/pull',
    {
      schema: {
        tags: ['models'],
        summary: 'Pull a model onto the Ollama server (admin)',
        description:
          "With `stream:true`, Ollama's progress lines as NDJSON, ending with " +
          '`{"status":"success"}` (or `{error, message}`); otherwise `{"status":"success"}` ' +
          'once the pull is done, which can take a long time for a large model.',
        body: PullRequestSchema,
        response: {
          200: {
            description: 'Pulled',
            content: {
              'application/json': { schema: PullProgressSchema },
              'application/x-ndjson': { schema: PullProgressSchema },
            },
          },
          ...errorResponses(400, 401, 403, 404, 413, 415, 502, 503),
        },
      },
    },
    async (request, reply) => {
      const name = request.body.name ?? request.body.model
      if (name === undefined) {
        throw new AppError(400, ErrorCode.validation, "body must have property 'name' (or 'model')")
      }
      const abort = abortOnClientGone(request, reply)
      // Always streamed upstream: progress keeps the connection busy during an hour-long pull,
      // and a failure arrives as a line that is mapped to a status below.
      const upstream = await fastify.ollama.post(
        '/api/pull',
        { model: name, stream: true, insecure: request.body.insecure },
        abort.signal,
      )
      if (upstream.statusCode >= 400) throw await fastify.ollama.error(upstream)
      const lines = relayNdjson(upstream.body, {
        interruptedMessage: (reason) =>
          `The pull of ${name} on Ollama at ${fastify.ollama.url} stopped before it finished (${reason})`,
        isAborted: () => abort.signal.aborted,
        scrub: fastify.ollama.scrub,
      })
      if (request.body.stream === true) return sendNdjson(reply, lines)

      const last = JSON.parse(await lastLine(lines)) as {
        status?: string
        error?: string
        message?: string
      }
      if (last.status === 'success') return { status: 'success' }
      // (A client that left is not answered: the error handler sees the closed socket.)
      const message = last.message ?? 'the pull did not finish'
      if (/file does not exist|not found/i.test(message)) {
        throw new AppError(404, ErrorCode.modelNotFound, `${name}: ${message}`)
      }
      throw new AppError(502, ErrorCode.ollamaError, `Pulling ${name} failed: ${message}`)
    },
  )
}

export default pull

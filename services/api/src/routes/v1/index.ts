import type { ErrorBody } from '@confluence-bot/shared'
import { ErrorCode } from '@confluence-bot/shared'
import type { FastifyInstance } from 'fastify'
import chatCompletions from './chat-completions.ts'
import embeddings from './embeddings.ts'
import models from './models.ts'
import { type SchemaError, schemaErrorMessage, toOpenAIError } from './openai-errors.ts'

// /v1 — OpenAI-compatible chat completions, models and embeddings, grounded like /api/chat.
// Every route needs a reader key (`Authorization: Bearer`, as the openai SDKs send it); the
// key's space limits apply to grounding. Every error leaves in OpenAI's shape: the api's error
// bodies (from the error handler, the auth hook, the body parser) are rewritten before they are
// serialized, so the rest of the api keeps its own shape.
export default async function openaiCompatible(fastify: FastifyInstance) {
  fastify.addHook('onRequest', fastify.requireRole('reader'))
  // A refused body says which field and why in plain words (the SDKs show only the message).
  fastify.setSchemaErrorFormatter(
    (errors, dataVar) => new Error(schemaErrorMessage(errors as SchemaError[], dataVar)),
  )
  fastify.addHook('preSerialization', async (_request, reply, payload) =>
    reply.statusCode >= 400 ? toOpenAIError(payload as ErrorBody) : payload,
  )
  fastify.setNotFoundHandler((request, reply) => {
    reply.code(404).send({
      error: ErrorCode.notFound,
      message: `Route ${request.method} ${request.url.split('?')[0]} not found (the OpenAI-compatible API has /v1/chat/completions, /v1/models and /v1/embeddings)`,
      statusCode: 404,
    } satisfies ErrorBody)
  })
  // An OPTIONS request that is no CORS preflight (a preflight is answered by the CORS hook before
  // any route) would fall to the root's catch-all OPTIONS route and leave in the API's shape.
  for (const url of ['/', '/*']) {
    fastify.options(url, { schema: { hide: true } }, (_request, reply) => reply.callNotFound())
  }
  await fastify.register(chatCompletions)
  await fastify.register(models)
  await fastify.register(embeddings)
}

import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import {
  OLLAMA_GET_ERRORS,
  OLLAMA_POST_ERRORS,
  OllamaEmbeddingsRequestSchema,
  OllamaEmbeddingsResponseSchema,
  OllamaEmbedRequestSchema,
  OllamaEmbedResponseSchema,
  OllamaPsSchema,
  OllamaShowRequestSchema,
  OllamaShowResponseSchema,
  OllamaTagsSchema,
  OllamaVersionSchema,
} from '../../schemas/ollama-compat.ts'
import { aliasOf, baseOf } from './alias.ts'
import { createCapabilities, type ListedModel } from './capabilities.ts'
import { createPassThrough } from './upstream.ts'

// What Ollama's clients read before they chat: the model list (with an alias beside each
// model), a model's details, the loaded models, the version, and the root that says Ollama is
// running. Only the list and an alias's details are rewritten; the rest is Ollama's answer.

const TAGS = ['ollama-compatible']

const models: FastifyPluginAsyncTypebox = async (fastify) => {
  const { ollama } = fastify
  const { sendObject, forward } = createPassThrough(fastify)
  const { canChatListed } = createCapabilities(fastify)

  fastify.get(
    '/',
    {
      schema: {
        tags: TAGS,
        summary: 'Ollama is running (HEAD too)',
        description:
          "Ollama's root, as clients probe it: `Ollama is running` when the Ollama server " +
          'behind the gateway answers.',
        response: {
          200: {
            description: 'Ollama is running',
            content: { 'text/plain': { schema: Type.String() } },
          },
          ...OLLAMA_GET_ERRORS,
        },
      },
    },
    async (_request, reply) => {
      const upstream = await ollama.get('/')
      if (upstream.statusCode >= 400) throw await ollama.error(upstream)
      return reply.type('text/plain; charset=utf-8').send((await ollama.bytes(upstream)) as never)
    },
  )

  fastify.get(
    '/api/version',
    {
      schema: {
        tags: TAGS,
        summary: "The Ollama server's version (HEAD too)",
        response: { 200: OllamaVersionSchema, ...OLLAMA_GET_ERRORS },
      },
    },
    async (_request, reply) => sendObject(reply, await ollama.get('/api/version')),
  )

  fastify.get(
    '/api/ps',
    {
      schema: {
        tags: TAGS,
        summary: 'Models Ollama has loaded',
        description:
          'As Ollama lists them: an alias runs on its base model, listed under that name.',
        response: { 200: OllamaPsSchema, ...OLLAMA_GET_ERRORS },
      },
    },
    async (_request, reply) => sendObject(reply, await ollama.get('/api/ps')),
  )

  fastify.get(
    '/api/tags',
    {
      schema: {
        tags: TAGS,
        summary: 'Models, each chat model with its grounded alias (HEAD too)',
        description:
          "Ollama's model list with, right after each model that can chat, its grounded " +
          'alias: the same entry named `<name>+confluence` (e.g. `llama3.2:latest+confluence`). ' +
          "A model whose capabilities (Ollama's /api/show, remembered per digest) lack " +
          '`completion`, such as an embedding model, gets no alias; one whose capabilities ' +
          'Ollama does not report (an older Ollama, or show failing) gets one.',
        response: { 200: OllamaTagsSchema, ...OLLAMA_GET_ERRORS },
      },
    },
    async () => {
      const upstream = await ollama.get('/api/tags')
      if (upstream.statusCode >= 400) throw await ollama.error(upstream)
      const { models } = await ollama.json<{ models: ListedModel[] }>(upstream)
      const canChat = await canChatListed(models)
      return {
        models: models.flatMap((model, i) => {
          if (!canChat[i]) return [model]
          const alias = aliasOf(model.name)
          return [model, { ...model, name: alias, model: alias }]
        }),
      }
    },
  )

  fastify.post(
    '/api/show',
    {
      schema: {
        tags: TAGS,
        summary: "A model's details (an alias: its base model's)",
        description:
          "Ollama's /api/show. An alias answers its base model's details, with " +
          '`details.parent_model` naming that model.',
        body: OllamaShowRequestSchema,
        response: { 200: OllamaShowResponseSchema, ...OLLAMA_POST_ERRORS },
      },
    },
    async (request, reply) => {
      const body = request.body
      const base = baseOf(body.model ?? body.name)
      if (base === undefined) return forward(request, reply, '/api/show', body)
      const upstream = await ollama.post('/api/show', { ...body, model: base, name: undefined })
      if (upstream.statusCode >= 400) throw await ollama.error(upstream)
      const show = await ollama.json<{ details?: Record<string, unknown> }>(upstream)
      const answer = { ...show, details: { ...show.details, parent_model: base } }
      return reply.type('application/json; charset=utf-8').send(JSON.stringify(answer) as never)
    },
  )

  fastify.post(
    '/api/embed',
    {
      schema: {
        tags: TAGS,
        summary: 'Embeddings (an alias embeds with its base model)',
        description: "Ollama's /api/embed, passed through; an alias's base model embeds.",
        body: OllamaEmbedRequestSchema,
        response: {
          200: OllamaEmbedResponseSchema,
          ...OLLAMA_POST_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const body = request.body
      const base = baseOf(body.model)
      return forward(
        request,
        reply,
        '/api/embed',
        base === undefined ? body : { ...body, model: base },
      )
    },
  )

  fastify.post(
    '/api/embeddings',
    {
      schema: {
        tags: TAGS,
        summary: 'One embedding, the legacy way (an alias embeds with its base model)',
        description:
          "Ollama's legacy /api/embeddings (superseded by /api/embed, still used by older " +
          "clients), passed through; an alias's base model embeds.",
        body: OllamaEmbeddingsRequestSchema,
        response: { 200: OllamaEmbeddingsResponseSchema, ...OLLAMA_POST_ERRORS },
      },
    },
    async (request, reply) => {
      const body = request.body
      const base = baseOf(body.model)
      const sent = base === undefined ? body : { ...body, model: base }
      return forward(request, reply, '/api/embeddings', sent)
    },
  )
}

export default models

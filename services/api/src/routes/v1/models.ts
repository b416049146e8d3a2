import { AppError, ErrorCode } from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import {
  ModelParamsSchema,
  type OpenAIModel,
  OpenAIModelListSchema,
  OpenAIModelSchema,
  openAIErrors,
} from '../../schemas/openai.ts'
import { baseOf } from '../ollama/alias.ts'

type OllamaTag = { name: string; modified_at: string }

// Ollama names models `name:tag`; one asked for without a tag is its `:latest`, as Ollama reads it.
const withTag = (name: string) => (name.includes(':') ? name : `${name}:latest`)

const toModel = (tag: OllamaTag): OpenAIModel => ({
  id: tag.name,
  object: 'model',
  created: Math.floor(Date.parse(tag.modified_at) / 1000),
  owned_by: 'ollama',
})

const models: FastifyPluginAsyncTypebox = async (fastify) => {
  const { ollama } = fastify

  /** The models installed on the Ollama server, as OpenAI lists models. */
  async function installed(): Promise<OpenAIModel[]> {
    const upstream = await ollama.get('/api/tags')
    if (upstream.statusCode >= 400) throw await ollama.error(upstream)
    // Ollama lists an empty store as `{"models":[]}`, never null.
    const { models } = await ollama.json<{ models: OllamaTag[] }>(upstream)
    return models.map(toModel)
  }

  fastify.get(
    '/models',
    {
      schema: {
        tags: ['openai'],
        summary: 'Models (OpenAI-compatible)',
        description:
          "The models installed on the Ollama server (Ollama's /api/tags), as OpenAI lists them. Any of them answers /v1/chat/completions, grounded; embedding models answer /v1/embeddings.",
        response: { 200: OpenAIModelListSchema, ...openAIErrors(401, 403, 502, 503, 504) },
      },
    },
    async () => ({ object: 'list' as const, data: await installed() }),
  )

  fastify.get(
    '/models/:model',
    {
      schema: {
        tags: ['openai'],
        summary: 'One model (OpenAI-compatible)',
        description:
          "A model installed on the Ollama server; without a tag the name means its `:latest`. A name with a namespace (`hf.co/org/model`) is sent URL-encoded, as the openai SDKs do. /ollama's grounded alias (`llama3.2:latest+confluence`) answers as its base model (`llama3.2:latest`), which is what /v1/chat/completions uses for it.",
        params: ModelParamsSchema,
        response: { 200: OpenAIModelSchema, ...openAIErrors(401, 403, 404, 502, 503, 504) },
      },
    },
    async (request) => {
      const asked = request.params.model
      // /ollama's grounded alias (`llama3.2:latest+confluence`) names its base model, which is
      // what /v1 answers with (grounded anyway), so the base model is the one described.
      const wanted = withTag(baseOf(asked) ?? asked).toLowerCase()
      const found = (await installed()).find((model) => model.id.toLowerCase() === wanted)
      if (found === undefined) {
        throw new AppError(
          404,
          ErrorCode.modelNotFound,
          `The model '${asked}' is not installed on the Ollama server (GET /v1/models lists those that are)`,
        )
      }
      return found
    },
  )
}

export default models

import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { humanBytes } from '../../lib/human-bytes.ts'
import { errorResponses } from '../../schemas/common.ts'
import { type Model, ModelListSchema } from '../../schemas/models.ts'

type OllamaTag = {
  name: string
  modified_at: string
  size: number
  details?: { family?: string; parameter_size?: string; quantization_level?: string }
}

// Details Ollama leaves out stay out: the serializer drops undefined optional fields.
const toModel = (tag: OllamaTag): Model => ({
  name: tag.name,
  size: humanBytes(tag.size),
  bytes: tag.size,
  modified_at: tag.modified_at,
  family: tag.details?.family,
  parameter_size: tag.details?.parameter_size,
  quantization: tag.details?.quantization_level,
})

const models: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/models',
    {
      schema: {
        tags: ['models'],
        summary: 'Models installed on the Ollama server',
        response: { 200: ModelListSchema, ...errorResponses(401, 502, 503, 504) },
      },
    },
    async () => {
      const upstream = await fastify.ollama.get('/api/tags')
      if (upstream.statusCode >= 400) throw await fastify.ollama.error(upstream)
      // Ollama lists an empty store as `{"models":[]}`, never null.
      const { models } = (await upstream.body.json()) as { models: OllamaTag[] }
      return { models: models.map(toModel) }
    },
  )
}

export default models

import { AppError, ErrorCode } from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { abortOnClientGone } from '../../lib/proxy.ts'
import {
  EmbeddingRequestSchema,
  EmbeddingResponseSchema,
  openAIErrors,
} from '../../schemas/openai.ts'
import { usageOf } from '../api/chat.ts'

/**
 * A vector as OpenAI's `encoding_format: "base64"` carries it: the float32 values, little-endian,
 * base64-encoded. The openai SDKs ask for it by default and decode it into a Float32Array.
 */
export function float32Base64(vector: readonly number[]): string {
  const bytes = Buffer.alloc(vector.length * 4)
  vector.forEach((value, i) => {
    bytes.writeFloatLE(value, i * 4)
  })
  return bytes.toString('base64')
}

type OllamaEmbed = { embeddings: number[][]; prompt_eval_count?: number }

const embeddings: FastifyPluginAsyncTypebox = async (fastify) => {
  const { ollama } = fastify

  fastify.post(
    '/embeddings',
    {
      schema: {
        tags: ['openai'],
        summary: 'Embeddings (OpenAI-compatible)',
        description:
          "Vectors for a text or a list of texts from an Ollama embedding model (Ollama's /api/embed). " +
          '`encoding_format: "base64"` (the openai SDKs\' default) gives each vector as base64 of ' +
          'little-endian float32 bytes; `float` as numbers. `dimensions` is passed to Ollama. ' +
          'Token arrays are refused (400): send text. `user` and other fields are ignored.',
        body: EmbeddingRequestSchema,
        response: {
          200: EmbeddingResponseSchema,
          ...openAIErrors(400, 401, 403, 404, 413, 415, 502, 503),
        },
      },
    },
    async (request, reply) => {
      const { model, input, encoding_format: encoding, dimensions } = request.body
      const texts = typeof input === 'string' ? [input] : input
      if (!texts.every((text): text is string => typeof text === 'string')) {
        throw new AppError(
          400,
          ErrorCode.validation,
          'body/input must be text: token arrays are not supported (Ollama tokenizes itself); send the text',
        )
      }
      const abort = abortOnClientGone(request, reply)
      const upstream = await ollama.post(
        '/api/embed',
        { model, input: texts, dimensions },
        abort.signal,
      )
      if (upstream.statusCode >= 400) throw await ollama.error(upstream)
      const answer = await ollama.json<OllamaEmbed>(upstream)
      const encode = encoding === 'base64' ? float32Base64 : (vector: number[]) => vector
      const tokens = usageOf(answer).prompt_tokens
      return {
        object: 'list' as const,
        data: answer.embeddings.map((vector, index) => ({
          object: 'embedding' as const,
          index,
          embedding: encode(vector),
        })),
        model,
        usage: { prompt_tokens: tokens, total_tokens: tokens },
      }
    },
  )
}

export default embeddings

import {
  type ChatTurn,
  contextLengthOf,
  type Grounding,
  GroundingError,
  ground,
} from '@confluence-bot/index'
import { AppError, ErrorCode } from '@confluence-bot/shared'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { searchFailure } from '../routes/api/search.ts'
import { allowedSpaces } from './spaces.ts'

// The api's side of grounded answers: the search index, Ollama's word on a model's context
// length (cached), and the short non-streamed call that makes a follow-up a standalone query.
// What is retrieved and how the prompt is built is @confluence-bot/index's `ground`, shared with
// the CLI.

/** How long a model's context length from /api/show is trusted. */
const SHOW_TTL_MS = 10 * 60 * 1000
/** The longest standalone query the rewrite may produce, in tokens. */
const REWRITE_TOKENS = 64

export type GroundingRequest = {
  model: string
  messages: ChatTurn[]
  spaces?: readonly string[]
  topK?: number
  options?: { num_ctx?: number; num_predict?: number; [option: string]: unknown }
  signal: AbortSignal
}

export function createGrounder(fastify: FastifyInstance) {
  const { config, ollama } = fastify
  const lengths = new Map<string, { value: number | undefined; until: number }>()

  /** The model's context length; a model Ollama does not have is the client's 404. */
  async function contextLength(model: string, signal: AbortSignal): Promise<number | undefined> {
    const known = lengths.get(model)
    if (known !== undefined && known.until > Date.now()) return known.value
    const response = await ollama.post('/api/show', { model }, signal)
    if (response.statusCode >= 400) throw await ollama.error(response)
    const value = contextLengthOf(await ollama.json(response))
    lengths.set(model, { value, until: Date.now() + SHOW_TTL_MS })
    return value
  }

  /** The model's standalone query; '' (keep the question) when the call fails. */
  async function rewrite(model: string, messages: ChatTurn[], numCtx: number, signal: AbortSignal) {
    try {
      const response = await ollama.post(
        '/api/chat',
        {
          model,
          messages,
          stream: false,
          // The answer's num_ctx: another would make Ollama reload the model between the calls.
          options: { temperature: 0, num_predict: REWRITE_TOKENS, num_ctx: numCtx },
        },
        signal,
      )
      if (response.statusCode >= 400) throw await ollama.error(response)
      // Ollama's chat answer always has message.content; anything else is a failure (below).
      const answer = await ollama.json<{ message: { content: string } }>(response)
      return answer.message.content.trim()
    } catch (err) {
      signal.throwIfAborted()
      fastify.log.warn(
        { err: (err as Error).message },
        'follow-up rewrite failed; searching the question as asked',
      )
      return ''
    }
  }

  return async function groundRequest(
    request: FastifyRequest,
    input: GroundingRequest,
  ): Promise<Grounding> {
    const { model, signal } = input
    const predict = input.options?.num_predict
    // Ollama's failures are AppErrors already (404, 502, 503); anything else came from the index.
    try {
      return await ground({
        index: await fastify.chunkIndex.open(),
        messages: input.messages,
        filters: { spaces: allowedSpaces(request, input.spaces) },
        topK: input.topK ?? config.RAG_TOP_K,
        perPage: config.SEARCH_PER_PAGE,
        minSimilarity: config.RAG_MIN_SIMILARITY,
        maxContextTokens: config.RAG_MAX_CONTEXT_TOKENS,
        contextLength: () => contextLength(model, signal),
        rewrite: config.RAG_REWRITE_FOLLOW_UPS
          ? (messages, numCtx) => rewrite(model, messages, numCtx, signal)
          : undefined,
        answerTokens: typeof predict === 'number' && predict > 0 ? predict : undefined,
        numCtx: input.options?.num_ctx,
      })
    } catch (err) {
      if (err instanceof GroundingError) {
        throw new AppError(400, ErrorCode.validation, err.message, { cause: err })
      }
      throw err instanceof AppError ? err : searchFailure(err)
    }
  }
}

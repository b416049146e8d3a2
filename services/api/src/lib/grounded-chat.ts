import type { ChatTurn, GroundingSource, Retrieval } from '@confluence-bot/index'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { createGrounder } from './grounding.ts'

// One grounded chat turn, whatever surface asked for it (/api/chat, /v1/chat/completions,
// /ollama/api/chat, MCP's ask): the excerpts retrieved for the latest user message and the
// body to send to Ollama's /api/chat, or the answer to give without asking the model when the
// index holds nothing on the question. Each surface sends the body and writes the answer in
// its own wire format; citations are marked with markCited on the answer's text.

export type ChatTurnRequest = {
  model: string
  /** The conversation so far, the question last. */
  messages: ChatTurn[]
  /** false: the model alone (also when RAG_ENABLED is false or the last turn is not a user's). */
  grounded: boolean
  spaces?: readonly string[]
  topK?: number
  /** Ollama's options (num_ctx is set by grounding, num_predict is kept for the answer). */
  options?: { num_ctx?: number; num_predict?: number; [option: string]: unknown }
  /** Other fields of Ollama's chat body, passed through (format, keep_alive, think, tools…). */
  extra?: Record<string, unknown>
  stream: boolean
  signal: AbortSignal
}

export type PreparedTurn = {
  /** Ollama's /api/chat body; absent when `nothingFound` answers instead. */
  payload?: Record<string, unknown>
  /** The numbered excerpts (empty when not grounded or nothing was found). */
  sources: GroundingSource[]
  /** What retrieval did (grounded turns only). */
  retrieval?: Retrieval
  /** The answer to give as is: the indexed spaces hold nothing on the question. */
  nothingFound?: string
}

export function createTurnPreparer(fastify: FastifyInstance) {
  const { config } = fastify
  const groundRequest = createGrounder(fastify)

  return async function prepareTurn(
    request: FastifyRequest,
    input: ChatTurnRequest,
  ): Promise<PreparedTurn> {
    const { model, messages, stream, extra, options } = input
    const question = messages.at(-1)
    const grounding =
      config.RAG_ENABLED && input.grounded && question?.role === 'user'
        ? await groundRequest(request, {
            model,
            messages,
            spaces: input.spaces,
            topK: input.topK,
            options,
            signal: input.signal,
          })
        : undefined
    if (grounding === undefined) {
      const payload = { ...extra, model, stream, messages, ...(options ? { options } : {}) }
      return { payload, sources: [] }
    }
    const { retrieval } = grounding
    if (grounding.nothingFound !== undefined) {
      return { sources: [], retrieval, nothingFound: grounding.nothingFound }
    }
    const payload = {
      ...extra,
      model,
      stream,
      messages: grounding.messages,
      options: { ...options, num_ctx: grounding.numCtx },
    }
    return { payload, sources: grounding.sources, retrieval }
  }
}

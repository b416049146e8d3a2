import { randomUUID } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { type ParsedLine, relayNdjson } from '../../lib/ndjson.ts'
import { abortOnClientGone, sendNdjson } from '../../lib/proxy.ts'
import {
  type ChatCompletion,
  ChatCompletionSchema,
  ChatRequestSchema,
  ChatStreamLineSchema,
} from '../../schemas/chat.ts'
import { errorResponses } from '../../schemas/common.ts'

// Ollama's final chat object (`done:true`): the answer and its token counts. Its message carries
// `content` and, when there are any, `thinking`, `tool_calls`, `images` and whatever else
// Ollama adds: all of it is the answer.
// Ollama leaves out what it has no value for (`done_reason`, the counts are omitempty).
type OllamaChatAnswer = {
  model?: string
  message?: { role?: string; content?: string; [field: string]: unknown }
  done_reason?: string
  prompt_eval_count?: number
  eval_count?: number
}

const count = (value: unknown) => (typeof value === 'number' && value >= 0 ? value : 0)

/** OpenAI-style usage from the counts on Ollama's final line (a missing count is 0). */
export const usageOf = (line: Pick<OllamaChatAnswer, 'prompt_eval_count' | 'eval_count'>) => {
  const prompt = count(line.prompt_eval_count)
  const completion = count(line.eval_count)
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
}

function toCompletion(answer: OllamaChatAnswer, model: string): ChatCompletion {
  return {
    id: `chatcmpl-${randomUUID()}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: typeof answer.model === 'string' ? answer.model : model,
    choices: [
      {
        index: 0,
        message: { ...answer.message, content: answer.message?.content ?? '', role: 'assistant' },
        finish_reason: typeof answer.done_reason === 'string' ? answer.done_reason : 'stop',
      },
    ],
    usage: usageOf(answer),
    // Retrieval over the Confluence index fills this list once the index exists.
    sources: [],
  }
}

const chat: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post(
    '/chat',
    {
      schema: {
        tags: ['chat'],
        summary: 'Chat with the model, grounded in the Confluence index',
        description:
          'Non-streamed answers have the chat.completion shape with `usage` and `sources`. ' +
          'With `stream:true` the answer is NDJSON: `{sources}` first, then token lines as ' +
          'Ollama writes them, then `{done:true, done_reason, usage}`; a failure ends the ' +
          'stream with `{error, message}`.',
        body: ChatRequestSchema,
        response: {
          200: {
            description: 'The answer',
            content: {
              'application/json': { schema: ChatCompletionSchema },
              'application/x-ndjson': { schema: ChatStreamLineSchema },
            },
          },
          ...errorResponses(400, 401, 404, 413, 415, 502, 503),
        },
      },
    },
    async (request, reply) => {
      const { rag: _rag, ...body } = request.body
      const stream = body.stream === true
      const model = body.model ?? fastify.config.CHAT_MODEL
      const abort = abortOnClientGone(request, reply)
      const upstream = await fastify.ollama.post(
        '/api/chat',
        { ...body, model, stream },
        abort.signal,
      )
      if (upstream.statusCode >= 400) throw await fastify.ollama.error(upstream)
      if (!stream) {
        const answer = await fastify.ollama.json<OllamaChatAnswer>(upstream)
        return reply.type('application/json; charset=utf-8').send(toCompletion(answer, model))
      }
      return sendNdjson(
        reply,
        relayNdjson(upstream.body, {
          prelude: [`${JSON.stringify({ sources: [] })}\n`],
          onTerminal: (line: ParsedLine) => ({
            ...line,
            usage: usageOf(line as unknown as OllamaChatAnswer),
          }),
          interruptedMessage: (reason) =>
            `The answer from Ollama at ${fastify.ollama.url} stopped before it was complete (${reason})`,
          isAborted: () => abort.signal.aborted,
          scrub: fastify.ollama.scrub,
        }),
      )
    },
  )
}

export default chat

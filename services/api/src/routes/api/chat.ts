import { randomUUID } from 'node:crypto'
import { type ChatTurn, type GroundingSource, markCited } from '@confluence-bot/index'
import { AppError, ErrorCode } from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { createTurnPreparer } from '../../lib/grounded-chat.ts'
import { ndjsonLine, type ParsedLine, relayNdjson, tokenTextOf } from '../../lib/ndjson.ts'
import { abortOnClientGone, sendNdjson } from '../../lib/proxy.ts'
import { refuseQuotedOutside } from '../../lib/spaces.ts'
import { newConversationId, type StoredMessage } from '../../plugins/app/conversations.ts'
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

type Completion = Omit<ChatCompletion, 'conversation_id'>

function toCompletion(answer: OllamaChatAnswer, model: string): Completion {
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
    sources: [],
  }
}

/** Lines of a stream, then `after()` once the last one is out (the conversation is saved). */
async function* thenRun(lines: AsyncIterable<Buffer | string>, after: () => Promise<void>) {
  yield* lines
  await after()
}

const chat: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config } = fastify
  const prepareTurn = createTurnPreparer(fastify)

  fastify.post(
    '/chat',
    {
      schema: {
        tags: ['chat'],
        summary: 'Chat with the model, grounded in the Confluence index',
        description:
          'The latest user message is answered from the Confluence index: excerpts are ' +
          'retrieved (a follow-up is first rewritten into a standalone query), numbered and ' +
          'given to the model, which cites them as [1], [2]; `sources` lists them under those ' +
          'numbers with `cited` set for those the answer uses. When nothing passes the ' +
          'relevance floor the answer says the indexed spaces hold nothing on the question, ' +
          'without asking the model. `rag.enabled:false` (or RAG_ENABLED=false) chats with the ' +
          'model alone. Each answer belongs to a conversation (`conversation_id`), kept per API ' +
          'key. Non-streamed answers have the chat.completion shape with `usage` and `sources`. ' +
          'With `stream:true` the answer is NDJSON: `{sources, retrieval, conversation_id}` ' +
          'first, then token lines as Ollama writes them, then `{done:true, done_reason, ' +
          'usage, cited}`; a failure ends the stream with `{error, message}`.',
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
      const { rag, conversation_id: continued, ...body } = request.body
      const { model: named, messages: sent, stream: streamed, options, ...extra } = body
      const stream = streamed === true
      const model = named ?? config.CHAT_MODEL
      const owner = request.owner as string
      const abort = abortOnClientGone(request, reply)

      let history: ChatTurn[] = []
      if (continued !== undefined) {
        const found = await fastify.conversations.load(owner, continued)
        if (found === null) {
          throw new AppError(
            404,
            ErrorCode.conversationNotFound,
            `No conversation ${continued} (it may have expired or been deleted)`,
          )
        }
        refuseQuotedOutside(request, found)
        history = found.messages.map(({ role, content }) => ({ role, content }))
      }
      const messages: ChatTurn[] = [...history, ...sent]
      const question = messages.at(-1) as ChatTurn
      const turn = await prepareTurn(request, {
        model,
        messages,
        grounded: rag?.enabled !== false,
        spaces: rag?.spaces,
        topK: rag?.top_k,
        options,
        extra,
        stream,
        signal: abort.signal,
      })
      const grounded = turn.retrieval !== undefined

      // What the conversation keeps: the question and its answer. Turns a client sends before
      // its question are its own context, not the conversation's: stored, they would let one
      // request write megabytes of made-up history.
      const asked: StoredMessage[] =
        question.role === 'user' ? [{ role: 'user', content: question.content }] : []
      const save = async (answer: string, sources: GroundingSource[]) => {
        const turns: StoredMessage[] = [
          ...asked,
          { role: 'assistant', content: answer, ...(grounded ? { sources } : {}) },
        ]
        // An answer is worth more than its record: Redis failing costs the history, not it.
        try {
          if ((await fastify.conversations.append(owner, conversationId, turns)) === null) {
            request.log.info('the conversation was deleted while it was answered: not saved')
            return {}
          }
          return { conversation_id: conversationId }
        } catch (err) {
          request.log.warn({ err: (err as Error).message }, 'the conversation could not be saved')
          return {}
        }
      }
      // A new conversation's id is known before the answer, so a streamed answer names it in
      // its first line; the conversation is stored with the answer, once it is complete.
      const conversationId = continued ?? newConversationId()
      const retrieval = grounded ? { retrieval: turn.retrieval } : {}

      if (turn.nothingFound !== undefined) {
        const content = turn.nothingFound
        const saved = await save(content, [])
        const answer = { model, message: { role: 'assistant', content }, done_reason: 'stop' }
        if (!stream) {
          return reply
            .type('application/json; charset=utf-8')
            .send({ ...toCompletion(answer, model), ...retrieval, ...saved })
        }
        const created_at = new Date().toISOString()
        const lines = [
          { sources: [], ...retrieval, conversation_id: conversationId },
          { model, created_at, message: answer.message, done: false },
          {
            model,
            created_at,
            message: { role: 'assistant', content: '' },
            done: true,
            done_reason: 'stop',
            usage: usageOf({}),
            cited: [],
          },
        ]
        return sendNdjson(reply, lines.map(ndjsonLine))
      }

      const upstream = await fastify.ollama.post('/api/chat', turn.payload, abort.signal)
      if (upstream.statusCode >= 400) throw await fastify.ollama.error(upstream)
      const { sources } = turn
      if (!stream) {
        const completion = toCompletion(
          await fastify.ollama.json<OllamaChatAnswer>(upstream),
          model,
        )
        const content = (completion.choices[0] as Completion['choices'][number]).message.content
        const cited = markCited(sources, content)
        const saved = await save(content, cited)
        return reply.type('application/json; charset=utf-8').send({
          ...completion,
          sources: cited,
          ...retrieval,
          ...saved,
        })
      }
      let content = ''
      let complete = false
      const relay = relayNdjson(upstream.body, {
        prelude: [ndjsonLine({ sources, ...retrieval, conversation_id: conversationId })],
        onData: (line) => {
          content += tokenTextOf(line)
        },
        onTerminal: (line: ParsedLine) => {
          complete = true
          content += tokenTextOf(line)
          const cited = markCited(sources, content)
          return {
            ...line,
            usage: usageOf(line as unknown as OllamaChatAnswer),
            cited: cited.filter((s) => s.cited).map((s) => s.n),
          }
        },
        interruptedMessage: (reason) =>
          `The answer from Ollama at ${fastify.ollama.url} stopped before it was complete (${reason})`,
        isAborted: () => abort.signal.aborted,
        scrub: fastify.ollama.scrub,
      })
      // Only a complete answer joins the conversation: a cut one would be read back as said.
      return sendNdjson(
        reply,
        thenRun(relay, async () => {
          if (!complete) return
          await save(content, markCited(sources, content))
        }),
      )
    },
  )
}

export default chat

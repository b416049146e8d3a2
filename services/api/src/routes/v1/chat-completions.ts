import { randomUUID } from 'node:crypto'
import { type GroundingSource, markCited } from '@confluence-bot/index'
import type { ErrorBody } from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { createTurnPreparer } from '../../lib/grounded-chat.ts'
import { type ParsedLine, relayNdjson, tokenTextOf } from '../../lib/ndjson.ts'
import { abortOnClientGone } from '../../lib/proxy.ts'
import { SSE_DONE, sendSse, sseEvent } from '../../lib/sse.ts'
import {
  ChatCompletionChunkSchema,
  type ChatCompletionRequest,
  ChatCompletionRequestSchema,
  type OpenAIChatCompletion,
  OpenAIChatCompletionSchema,
  openAIErrors,
} from '../../schemas/openai.ts'
import { usageOf } from '../api/chat.ts'
import { baseOf } from '../ollama/alias.ts'
import { toTurn } from './messages.ts'
import { toOpenAIError } from './openai-errors.ts'

// POST /v1/chat/completions: OpenAI's chat completion, answered like /api/chat (the latest user
// message grounded in the index, citations [n] in the text) through the shared turn preparer,
// and written in OpenAI's wire format, with the sources as an extra field. Unlike /api/chat it
// keeps no conversation: OpenAI clients send the whole conversation with every request.

/** Ollama's final chat object (`done:true`); its message always has `content`. */
type OllamaChatAnswer = {
  message: { content: string }
  done_reason?: string
  prompt_eval_count?: number
  eval_count?: number
}

/** OpenAI's finish_reason for Ollama's done_reason: `length` when num_predict cut it, else stop. */
export const finishReasonOf = (doneReason: unknown) => (doneReason === 'length' ? 'length' : 'stop')

/** OpenAI's sampling parameters as Ollama's options; absent or null ones are left to Ollama. */
export function ollamaOptionsOf(body: ChatCompletionRequest): Record<string, unknown> {
  const options = {
    temperature: body.temperature,
    top_p: body.top_p,
    num_predict: body.max_completion_tokens ?? body.max_tokens,
    stop: typeof body.stop === 'string' ? [body.stop] : body.stop,
    seed: body.seed,
    frequency_penalty: body.frequency_penalty,
    presence_penalty: body.presence_penalty,
  }
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value != null))
}

/** OpenAI's response_format as Ollama's `format`: json_object is "json", json_schema its schema. */
export function formatOf(
  format: ChatCompletionRequest['response_format'],
): Record<string, unknown> {
  if (format?.type === 'json_object') return { format: 'json' }
  if (format?.type === 'json_schema') return { format: format.json_schema?.schema ?? 'json' }
  return {}
}

const NO_QUESTION =
  "The last message is not the user's, so nothing was retrieved: the model answered alone"
const GROUNDING_OFF =
  'Grounding is off (rag.enabled:false or RAG_ENABLED=false): the model answered alone'

const chatCompletions: FastifyPluginAsyncTypebox = async (fastify) => {
  const { ollama, config } = fastify
  const prepareTurn = createTurnPreparer(fastify)

  fastify.post(
    '/chat/completions',
    {
      schema: {
        tags: ['openai'],
        summary: 'Chat completion (OpenAI-compatible), grounded in the Confluence index',
        description:
          "OpenAI's chat completion, answered like /api/chat: the latest user message is answered " +
          'from the Confluence index (unless RAG_ENABLED=false or the extra field ' +
          '`rag.enabled:false`), the answer cites the excerpts as [1], [2], and the extra field ' +
          '`sources` lists them (`cited` marks those the answer uses), with `retrieval`; ' +
          '`grounded` says whether it was grounded, and when not, `grounding_note` says why (off, ' +
          "or the last message is not the user's: nothing to retrieve for). A model name with " +
          "/ollama's `+confluence` suffix is its base model (/v1 is grounded anyway). The API " +
          "key's spaces limit what is retrieved; `rag.spaces` narrows further. When the index " +
          'holds nothing on the question the answer says so without asking the model. ' +
          'Mapped to Ollama: temperature, top_p, max_tokens / max_completion_tokens (num_predict), ' +
          'stop, seed, frequency_penalty, presence_penalty, response_format (json_object, ' +
          'json_schema). Text content parts are joined; `image_url` parts with a data: URL are ' +
          "the message's images (links are refused, never fetched; audio and file parts are " +
          'refused); assistant `tool_calls` (content null) and `tool` turns are passed on as ' +
          "Ollama's; the `developer` role is a system message. Ignored: tools, tool_choice, " +
          'parallel_tool_calls, functions, logprobs, top_logprobs, ' +
          'logit_bias, user, metadata, store, service_tier, reasoning_effort, modalities, audio, ' +
          'prediction, web_search_options; `n` must be 1. With `stream:true` the answer is ' +
          'text/event-stream: chat.completion.chunk events (the first with role and `sources`), ' +
          'one with finish_reason, a usage chunk with stream_options.include_usage, then ' +
          '`data: [DONE]`; a failure mid-answer ends with `data: {"error":{…}}` and no [DONE].',
        body: ChatCompletionRequestSchema,
        response: {
          200: {
            description: 'The answer',
            content: {
              'application/json': { schema: OpenAIChatCompletionSchema },
              'text/event-stream': { schema: ChatCompletionChunkSchema },
            },
          },
          ...openAIErrors(400, 401, 403, 404, 413, 415, 502, 503),
        },
      },
    },
    async (request, reply) => {
      const { body } = request
      const { model, rag } = body
      const stream = body.stream === true
      // A message Ollama cannot take is refused (400) before anything is asked of anyone.
      const messages = body.messages.map(toTurn)
      const abort = abortOnClientGone(request, reply)
      // An alias /ollama/api/tags lists (`llama3.2:latest+confluence`) is its base model here:
      // /v1 grounds every model. The answer still names the model as it was asked for.
      const base = baseOf(model) ?? model
      const groundingOn = config.RAG_ENABLED && rag?.enabled !== false
      const turn = await prepareTurn(request, {
        model: base,
        messages,
        grounded: groundingOn,
        spaces: rag?.spaces,
        topK: rag?.top_k,
        options: ollamaOptionsOf(body),
        extra: formatOf(body.response_format),
        stream,
        signal: abort.signal,
      })
      // Whether the answer was grounded, and when it was not, why: with grounding on, a
      // conversation whose last turn is not the user's (only a system prompt, or the
      // assistant's turn to continue) has no question to retrieve for.
      const grounding =
        turn.retrieval === undefined
          ? { grounded: false, grounding_note: groundingOn ? NO_QUESTION : GROUNDING_OFF }
          : { grounded: true, retrieval: turn.retrieval }
      const id = `chatcmpl-${randomUUID()}`
      const created = Math.floor(Date.now() / 1000)
      const includeUsage = body.stream_options?.include_usage === true

      const completion = (
        content: string,
        finish: string,
        usage: OpenAIChatCompletion['usage'],
        sources: GroundingSource[],
      ): OpenAIChatCompletion => ({
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content, refusal: null },
            finish_reason: finish,
            logprobs: null,
          },
        ],
        usage,
        sources: markCited(sources, content),
        ...grounding,
      })

      // The stream's events; every chunk names the same id, time and model, as OpenAI's do.
      const chunk = (choices: unknown[], extra: Record<string, unknown>) =>
        sseEvent({ id, object: 'chat.completion.chunk', created, model, choices, ...extra })
      const opening = (sources: GroundingSource[]) =>
        chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }], {
          sources,
          ...grounding,
        })
      // Empty tokens (a thinking model's reasoning, the final line) make no event.
      const deltas = (text: string) =>
        text === ''
          ? []
          : [chunk([{ index: 0, delta: { content: text }, finish_reason: null }], {})]
      function* closing(
        finish: string,
        usage: OpenAIChatCompletion['usage'],
        cited: GroundingSource[],
      ) {
        yield chunk([{ index: 0, delta: {}, finish_reason: finish }], {
          cited: cited.filter((source) => source.cited).map((source) => source.n),
        })
        if (includeUsage) yield chunk([], { usage })
        yield SSE_DONE
      }

      if (turn.nothingFound !== undefined) {
        const content = turn.nothingFound
        if (!stream) return completion(content, 'stop', usageOf({}), [])
        return sendSse(reply, [
          opening([]),
          ...deltas(content),
          ...closing('stop', usageOf({}), []),
        ])
      }

      const upstream = await ollama.post('/api/chat', turn.payload, abort.signal)
      if (upstream.statusCode >= 400) throw await ollama.error(upstream)
      const { sources } = turn
      if (!stream) {
        const answer = await ollama.json<OllamaChatAnswer>(upstream)
        return completion(
          answer.message.content,
          finishReasonOf(answer.done_reason),
          usageOf(answer),
          sources,
        )
      }

      // Ollama's NDJSON through the relay, which guarantees a terminal line or an error line
      // (a cut stream gains one); each token becomes a delta event the moment it arrives.
      let content = ''
      let pending: string[] = []
      let terminal: ParsedLine | undefined
      const take = (text: string) => {
        content += text
        pending.push(...deltas(text))
      }
      const relay = relayNdjson(upstream.body, {
        onData: (line) => take(tokenTextOf(line)),
        onTerminal: (line) => {
          terminal = line
          take(tokenTextOf(line))
          return line
        },
        interruptedMessage: (reason) =>
          `The answer from Ollama at ${ollama.url} stopped before it was complete (${reason})`,
        isAborted: () => abort.signal.aborted,
        scrub: ollama.scrub,
      })
      async function* events() {
        yield opening(sources)
        let last = ''
        for await (const part of relay) {
          const out = pending.join('')
          pending = []
          if (out !== '') yield out
          last = part.toString()
        }
        // The client went away: nobody to tell, and Ollama's request is cancelled already.
        if (abort.signal.aborted) return
        if (terminal === undefined) {
          // The relay's last line says what failed: `{error, message}`. No [DONE] follows, so
          // no client takes the answer so far for the whole answer.
          const failed = JSON.parse(last.trimEnd().split('\n').at(-1) as string) as ErrorBody
          yield sseEvent(toOpenAIError({ ...failed, statusCode: 502 }))
          return
        }
        yield* closing(
          finishReasonOf(terminal.done_reason),
          usageOf(terminal),
          markCited(sources, content),
        )
      }
      return sendSse(reply, events())
    },
  )
}

export default chatCompletions

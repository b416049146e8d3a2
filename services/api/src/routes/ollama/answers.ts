import type { ChatTurn } from '@confluence-bot/index'
import { AppError, ErrorCode } from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import {
  OLLAMA_POST_ERRORS,
  OllamaChatRequestSchema,
  OllamaChatResponseSchema,
  OllamaGenerateRequestSchema,
  OllamaGenerateResponseSchema,
} from '../../schemas/ollama-compat.ts'
import { baseOf } from './alias.ts'
import { createGroundedAnswerer } from './grounded.ts'
import { createPassThrough } from './upstream.ts'

const STREAM_NOTE =
  'Ollama streams unless `stream:false`: NDJSON lines, the last `done:true` (or `{error}` if ' +
  'the answer failed part-way).'

const GROUNDED_NOTE =
  'A grounded alias (`<model>+confluence`) answers from the Confluence index with `<model>`, ' +
  'within the spaces the API key may read (`options.rag_spaces`, `options.rag_top_k` narrow ' +
  'it): the text cites excerpts as [1], [2] and ends with a "Sources" list of those it cites; ' +
  'the `done:true` object carries `sources` and `model` is the alias throughout. With ' +
  '`format` (`"json"` or a JSON schema) no Sources list is added, so the text stays the ' +
  "model's JSON; `sources` still carries them. An alias of a model that cannot chat (an " +
  'embedding model) is a 400 before anything is retrieved. When the ' +
  'index holds nothing on the question, that is the answer, without asking the model. Any ' +
  'other model passes through to Ollama untouched.'

const answers: FastifyPluginAsyncTypebox = async (fastify) => {
  const answerGrounded = createGroundedAnswerer(fastify)
  const { forward } = createPassThrough(fastify)

  fastify.post(
    '/api/chat',
    {
      schema: {
        tags: ['ollama-compatible'],
        summary: "Chat, in Ollama's format (grounded under an alias)",
        description: `Ollama's /api/chat. ${STREAM_NOTE} ${GROUNDED_NOTE} The latest user message is the question; earlier turns are the conversation.`,
        body: OllamaChatRequestSchema,
        response: {
          200: {
            description: "Ollama's chat answer",
            content: {
              'application/json': { schema: OllamaChatResponseSchema },
              'application/x-ndjson': { schema: OllamaChatResponseSchema },
            },
          },
          ...OLLAMA_POST_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const body = request.body
      const base = baseOf(body.model)
      if (base === undefined) return forward(request, reply, '/api/chat', body)
      const { model: alias, messages, stream, options, ...extra } = body
      return answerGrounded(request, reply, {
        alias: alias as string,
        base,
        // Grounding reads every turn's text: a turn without one (tool calls only) has ''.
        messages: (messages ?? []).map((turn) => ({ ...turn, content: turn.content ?? '' })),
        options,
        extra,
        stream: stream !== false,
        endpoint: 'chat',
      })
    },
  )

  fastify.post(
    '/api/generate',
    {
      schema: {
        tags: ['ollama-compatible'],
        summary: "Single-turn completion, in Ollama's format (grounded under an alias)",
        description: `Ollama's /api/generate. ${STREAM_NOTE} ${GROUNDED_NOTE} Under an alias the prompt is asked as a one-turn chat (\`system\` kept as a system turn) and answered with \`response\` tokens: \`suffix\`, \`template\`, \`context\` and \`images\` have no meaning there and are dropped (never sent to Ollama), and \`raw:true\` is a 400, since a raw prompt goes to the model as is, with no room for the excerpts.`,
        body: OllamaGenerateRequestSchema,
        response: {
          200: {
            description: "Ollama's generate answer",
            content: {
              'application/json': { schema: OllamaGenerateResponseSchema },
              'application/x-ndjson': { schema: OllamaGenerateResponseSchema },
            },
          },
          ...OLLAMA_POST_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const body = request.body
      const base = baseOf(body.model)
      if (base === undefined) return forward(request, reply, '/api/generate', body)
      // What only generate knows (a template, fill-in-the-middle, the old context array,
      // images) has no meaning in a grounded chat turn and is dropped; a raw prompt is
      // refused, since it would reach the model without the excerpts.
      const {
        model: alias,
        prompt,
        system,
        stream,
        options,
        suffix: _suffix,
        template: _template,
        context: _context,
        raw,
        images: _images,
        ...extra
      } = body as typeof body & Record<string, unknown>
      if (raw === true) {
        throw new AppError(
          400,
          ErrorCode.validation,
          `raw mode: a raw prompt cannot be grounded (it reaches the model as is, with no room for the excerpts); send it to "${base}" without +confluence`,
        )
      }
      const question = prompt ?? ''
      // An empty prompt loads the model, as in Ollama: an empty chat does the same.
      const messages: ChatTurn[] =
        question.trim() === ''
          ? []
          : [
              ...(system === undefined ? [] : [{ role: 'system', content: system }]),
              { role: 'user', content: question },
            ]
      return answerGrounded(request, reply, {
        alias: alias as string,
        base,
        messages,
        options,
        extra,
        stream: stream !== false,
        endpoint: 'generate',
      })
    },
  )
}

export default answers

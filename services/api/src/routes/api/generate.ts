import { type ChatTurn, markCited } from '@confluence-bot/index'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { createGrounder } from '../../lib/grounding.ts'
import { ndjsonLine, type ParsedLine, relayNdjson, tokenTextOf } from '../../lib/ndjson.ts'
import { notAnAnswer } from '../../lib/ollama-upstream.ts'
import { abortOnClientGone, sendNdjson } from '../../lib/proxy.ts'
import { errorResponses } from '../../schemas/common.ts'
import {
  type GenerateRequest,
  GenerateRequestSchema,
  GenerateResponseSchema,
} from '../../schemas/generate.ts'

const SPACE = new Set([0x20, 0x09, 0x0a, 0x0d])

/**
 * True when the body starts with `{` and ends with `}` past white space: an Ollama answer does,
 * another server's page does not. The bytes are read in place, not copied or parsed.
 */
function looksLikeObject(body: Buffer): boolean {
  let start = 0
  let end = body.length - 1
  while (start < end && SPACE.has(body[start] as number)) start++
  while (end > start && SPACE.has(body[end] as number)) end--
  return body[start] === 0x7b && body[end] === 0x7d
}

const generate: FastifyPluginAsyncTypebox = async (fastify) => {
  const groundRequest = createGrounder(fastify)

  fastify.post(
    '/generate',
    {
      schema: {
        tags: ['chat'],
        summary: 'Single-turn completion',
        description:
          "Answers Ollama's generate object; with `stream:true`, NDJSON lines as Ollama writes " +
          'them, ending with `done:true` (or `{error, message}` on a failure). Plain unless ' +
          '`rag:{enabled:true}`: then the prompt is answered from the Confluence index like ' +
          '/api/chat, the answer carries `sources` and `retrieval` (streamed: a first line ' +
          '`{sources, retrieval}`, and `cited` on the done line).',
        body: GenerateRequestSchema,
        response: {
          200: {
            description: "Ollama's answer",
            content: {
              'application/json': { schema: GenerateResponseSchema },
              'application/x-ndjson': { schema: GenerateResponseSchema },
            },
          },
          ...errorResponses(400, 401, 404, 413, 415, 502, 503),
        },
      },
    },
    async (request, reply) => {
      const { rag, ...body } = request.body
      const stream = body.stream === true
      const model = body.model ?? fastify.config.CHAT_MODEL
      const abort = abortOnClientGone(request, reply)
      if (rag?.enabled === true && body.prompt.trim() !== '') {
        return groundedGenerate(request, reply, { body, rag, model, stream, signal: abort.signal })
      }
      const upstream = await fastify.ollama.post(
        '/api/generate',
        { ...body, model, stream },
        abort.signal,
      )
      if (upstream.statusCode >= 400) throw await fastify.ollama.error(upstream)
      if (!stream) {
        // Ollama writes a non-streamed answer in one piece when it is done: its bytes go to the
        // client untouched, as one buffer (cheaper than piping a stream; bench/gateway).
        const answer = await fastify.ollama.bytes(upstream)
        if (!looksLikeObject(answer)) throw notAnAnswer(fastify.ollama.url, answer)
        return reply.type('application/json; charset=utf-8').send(answer as never)
      }
      return sendNdjson(
        reply,
        relayNdjson(upstream.body, {
          interruptedMessage: (reason) =>
            `The answer from Ollama at ${fastify.ollama.url} stopped before it was complete (${reason})`,
          isAborted: () => abort.signal.aborted,
          scrub: fastify.ollama.scrub,
        }),
      )
    },
  )

  type Grounded = {
    body: Omit<GenerateRequest, 'rag'>
    rag: NonNullable<GenerateRequest['rag']>
    model: string
    stream: boolean
    signal: AbortSignal
  }

  /** A generate answer grounded like chat: the prompt is the question, excerpts in the prompt. */
  async function groundedGenerate(
    request: FastifyRequest,
    reply: FastifyReply,
    { body, rag, model, stream, signal }: Grounded,
  ) {
    const grounding = await groundRequest(request, {
      model,
      messages: [{ role: 'user', content: body.prompt }],
      spaces: rag.spaces,
      topK: rag.top_k,
      options: body.options,
      signal,
    })
    const { retrieval } = grounding
    if (grounding.nothingFound !== undefined) {
      const answer = {
        model,
        created_at: new Date().toISOString(),
        response: grounding.nothingFound,
        done: true,
        done_reason: 'stop',
        sources: [],
        retrieval,
      }
      if (!stream) return reply.type('application/json; charset=utf-8').send(answer)
      return sendNdjson(reply, [ndjsonLine({ ...answer, cited: [] })])
    }
    const [instructions, question] = grounding.messages as [ChatTurn, ChatTurn]
    const system = body.system ? `${instructions.content}\n\n${body.system}` : instructions.content
    const upstream = await fastify.ollama.post(
      '/api/generate',
      {
        ...body,
        model,
        stream,
        system,
        prompt: question.content,
        options: { ...body.options, num_ctx: grounding.numCtx },
      },
      signal,
    )
    if (upstream.statusCode >= 400) throw await fastify.ollama.error(upstream)
    const sources = grounding.sources
    if (!stream) {
      const answer = await fastify.ollama.json<ParsedLine>(upstream)
      const text = tokenTextOf(answer)
      return reply
        .type('application/json; charset=utf-8')
        .send({ ...answer, sources: markCited(sources, text), retrieval })
    }
    let text = ''
    return sendNdjson(
      reply,
      relayNdjson(upstream.body, {
        prelude: [ndjsonLine({ sources, retrieval })],
        onData: (line) => {
          text += tokenTextOf(line)
        },
        onTerminal: (line) => {
          text += tokenTextOf(line)
          const cited = markCited(sources, text).filter((s) => s.cited)
          return { ...line, cited: cited.map((s) => s.n) }
        },
        interruptedMessage: (reason) =>
          `The answer from Ollama at ${fastify.ollama.url} stopped before it was complete (${reason})`,
        isAborted: () => signal.aborted,
        scrub: fastify.ollama.scrub,
      }),
    )
  }
}

export default generate

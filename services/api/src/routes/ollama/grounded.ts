import { type ChatTurn, type GroundingSource, markCited } from '@confluence-bot/index'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { createTurnPreparer } from '../../lib/grounded-chat.ts'
import { type ParsedLine, relayNdjson, tokenTextOf } from '../../lib/ndjson.ts'
import { abortOnClientGone, sendNdjson } from '../../lib/proxy.ts'
import type { OllamaCompatOptions } from '../../schemas/ollama-compat.ts'
import { createPassThrough, ollamaErrorLine } from './upstream.ts'

// A grounded answer under an alias, in Ollama's own format: the turn is prepared as /api/chat
// prepares it (createTurnPreparer: retrieval within the key's spaces, the excerpts in the
// prompt), the base model answers through Ollama's /api/chat, and each of its lines is written
// back under the alias's name, as a chat or a generate line. Ollama's clients show only the
// text, so the answer keeps its [n] citations and ends with a "Sources" list of the excerpts it
// cites, sent as one last token before `done`; the `done:true` object also carries `sources`,
// the same items /api/chat gives.

/** One line (or the whole non-streamed answer) of Ollama's /api/chat. */
export type ChatLine = ParsedLine & {
  model: string
  created_at: string
  message: { role: string; content: string; thinking?: string }
  done: boolean
}

/** Writes a chat line of the base model as the client's line under the alias. */
export type Shape = (line: ChatLine, alias: string) => ParsedLine

export const asChat: Shape = (line, alias) => ({ ...line, model: alias })

/** Generate's line: `response` for `message.content` (a grounded generate is a one-turn chat). */
export const asGenerate: Shape = (line, alias) => {
  const { model: _base, created_at, message, done, ...rest } = line
  return {
    model: alias,
    created_at,
    response: message.content,
    thinking: message.thinking,
    done,
    ...rest,
  }
}

/** A title on one line: a newline in it would break the list. */
const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim()

/** The "Sources" list that ends a grounded answer: the cited excerpts ('' when none is cited). */
export function sourcesNote(sources: readonly GroundingSource[]): string {
  const cited = sources.filter((source) => source.cited)
  if (cited.length === 0) return ''
  const items = cited.map((source) => `- [${source.n}] ${oneLine(source.title)}: ${source.url}`)
  return `\n\nSources:\n${items.join('\n')}`
}

const write = (line: ParsedLine) => `${JSON.stringify(line)}\n`

type Presentation = { alias: string; sources: readonly GroundingSource[]; shape: Shape }

/**
 * The client's stream from the base model's chat lines (whole lines, as relayNdjson yields
 * them): each line under the alias; before `done`, the Sources token; on `done`, `sources`.
 * An `{error}` line (already in Ollama's shape) ends the stream as it is.
 */
async function* present(
  lines: AsyncIterable<Buffer | string> | Iterable<string>,
  { alias, sources, shape }: Presentation,
): AsyncGenerator<string> {
  let text = ''
  for await (const chunk of lines) {
    let out = ''
    for (const raw of chunk.toString().split('\n')) {
      if (raw === '') continue
      const line = JSON.parse(raw) as ChatLine & { error?: string }
      if (line.error !== undefined) {
        out += `${raw}\n`
        continue
      }
      text += tokenTextOf(line)
      if (line.done !== true) {
        out += write(shape(line, alias))
        continue
      }
      const cited = markCited(sources, text)
      const note = sourcesNote(cited)
      if (note !== '') {
        const { model, created_at } = line
        const token = { model, created_at, message: { role: 'assistant', content: note } }
        out += write(shape({ ...token, done: false }, alias))
      }
      out += write({ ...shape(line, alias), sources: cited })
    }
    yield out
  }
}

/** The non-streamed answer: the Sources list appended to the text, `sources` beside it. */
function presentWhole(answer: ChatLine, { alias, sources, shape }: Presentation): ParsedLine {
  const content = tokenTextOf(answer)
  const cited = markCited(sources, content)
  const message = { ...answer.message, content: content + sourcesNote(cited) }
  return { ...shape({ ...answer, message }, alias), sources: cited }
}

/** `rag_spaces` as a list: `"ENG, OPS"` is `["ENG", "OPS"]`. */
const spacesOf = (asked: string | string[] | undefined) =>
  typeof asked === 'string'
    ? asked
        .split(',')
        .map((space) => space.trim())
        .filter((space) => space !== '')
    : asked

export type GroundedRequest = {
  /** The name the client asked for, which every answer line carries. */
  alias: string
  /** The model that answers. */
  base: string
  messages: ChatTurn[]
  options: OllamaCompatOptions | undefined
  /** The rest of the client's body (format, keep_alive, think, tools…), passed on to Ollama. */
  extra: Record<string, unknown>
  stream: boolean
  shape: Shape
}

export function createGroundedAnswerer(fastify: FastifyInstance) {
  const { ollama } = fastify
  const prepareTurn = createTurnPreparer(fastify)
  const { interrupted } = createPassThrough(fastify)

  return async function answer(
    request: FastifyRequest,
    reply: FastifyReply,
    input: GroundedRequest,
  ) {
    const { alias, base, stream } = input
    // rag_* are the gateway's, not Ollama's: they never reach the model.
    const { rag_spaces, rag_top_k, ...options } = input.options ?? {}
    const abort = abortOnClientGone(request, reply)
    const turn = await prepareTurn(request, {
      model: base,
      messages: input.messages,
      grounded: true,
      spaces: spacesOf(rag_spaces),
      topK: rag_top_k,
      options,
      extra: input.extra,
      stream,
      signal: abort.signal,
    })
    const presentation = { alias, sources: turn.sources, shape: input.shape }
    const sendObject = (answer: ParsedLine) =>
      reply.type('application/json; charset=utf-8').send(JSON.stringify(answer))

    if (turn.nothingFound !== undefined) {
      // The index holds nothing on the question: that is the answer, and the model is not asked.
      const created_at = new Date().toISOString()
      const message = { role: 'assistant', content: turn.nothingFound }
      const said: ChatLine = { model: base, created_at, message, done: true, done_reason: 'stop' }
      if (!stream) return sendObject(presentWhole(said, presentation))
      const end = { ...said, message: { role: 'assistant', content: '' } }
      const lines = [write({ ...said, done: false, done_reason: undefined }), write(end)]
      return sendNdjson(reply, present(lines, presentation))
    }

    const upstream = await ollama.post('/api/chat', turn.payload, abort.signal)
    if (upstream.statusCode >= 400) throw await ollama.error(upstream)
    if (!stream)
      return sendObject(presentWhole(await ollama.json<ChatLine>(upstream), presentation))
    const relay = relayNdjson(upstream.body, {
      interruptedMessage: interrupted,
      isAborted: () => abort.signal.aborted,
      scrub: ollama.scrub,
      errorLine: ollamaErrorLine,
    })
    return sendNdjson(reply, present(relay, presentation))
  }
}

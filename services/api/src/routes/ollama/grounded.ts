import {
  type ChatTurn,
  defuseControlTokens,
  type GroundingSource,
  markCited,
} from '@confluence-bot/index'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { createTurnPreparer } from '../../lib/grounded-chat.ts'
import { ndjsonLine, type ParsedLine, relayNdjson, tokenTextOf } from '../../lib/ndjson.ts'
import { abortOnClientGone, sendNdjson } from '../../lib/proxy.ts'
import type { OllamaCompatOptions } from '../../schemas/ollama-compat.ts'
import { createCapabilities } from './capabilities.ts'
import { createPassThrough, ollamaErrorLine } from './upstream.ts'

// A grounded answer under an alias, in Ollama's own format: the turn is prepared as /api/chat
// prepares it (createTurnPreparer: retrieval within the key's spaces, the excerpts in the
// prompt), the base model answers through Ollama's /api/chat, and each of its lines is written
// back under the alias's name, as a chat or a generate line. Ollama's clients show only the
// text, so the answer keeps its [n] citations and ends with a "Sources" list of the excerpts it
// cites, sent as one last token before `done`; the `done:true` object also carries `sources`,
// the same items /api/chat gives. A client that asked for `format` (JSON) gets the model's
// text alone, which must parse: its sources are in `sources` only.

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

/**
 * A title on one line (a newline in it would break the list), its control tokens broken: clients
 * send this list back as the assistant's turn, and Ollama would read them as turn boundaries.
 */
const oneLine = (text: string) => defuseControlTokens(text.replace(/\s+/g, ' ').trim())

/** The "Sources" list that ends a grounded answer: the cited excerpts ('' when none is cited). */
export function sourcesNote(sources: readonly GroundingSource[]): string {
  const cited = sources.filter((source) => source.cited)
  if (cited.length === 0) return ''
  const items = cited.map((source) => `- [${source.n}] ${oneLine(source.title)}: ${source.url}`)
  return `\n\nSources:\n${items.join('\n')}`
}

type Presentation = {
  alias: string
  sources: readonly GroundingSource[]
  shape: Shape
  /** false when the client asked for `format`: the text stays the model's JSON. */
  note: boolean
}

/**
 * The client's stream from the base model's chat lines (whole lines, as relayNdjson yields
 * them): each line under the alias; before `done`, the Sources token; on `done`, `sources`.
 * An `{error}` line (already in Ollama's shape) ends the stream as it is.
 */
async function* present(
  lines: AsyncIterable<Buffer | string> | Iterable<string>,
  { alias, sources, shape, note: withNote }: Presentation,
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
        out += ndjsonLine(shape(line, alias))
        continue
      }
      const cited = markCited(sources, text)
      const note = withNote ? sourcesNote(cited) : ''
      if (note !== '') {
        const { model, created_at } = line
        const token = { model, created_at, message: { role: 'assistant', content: note } }
        out += ndjsonLine(shape({ ...token, done: false }, alias))
      }
      out += ndjsonLine({ ...shape(line, alias), sources: cited })
    }
    yield out
  }
}

/** The non-streamed answer: the Sources list appended (unless `format` was asked), `sources` beside it. */
function presentWhole(answer: ChatLine, { alias, sources, shape, note }: Presentation): ParsedLine {
  const content = tokenTextOf(answer)
  const cited = markCited(sources, content)
  const message = { ...answer.message, content: note ? content + sourcesNote(cited) : content }
  return { ...shape({ ...answer, message }, alias), sources: cited }
}

/**
 * `rag_spaces` as a list: `"ENG, OPS"` is `["ENG", "OPS"]`. Blank (`""`, `[]`), which is what a
 * UI sends for a field left empty, narrows nothing (undefined: every space the key may read),
 * rather than searching no space at all and answering that nothing was found.
 */
function spacesOf(asked: string | string[] | undefined): string[] | undefined {
  const items = typeof asked === 'string' ? asked.split(',') : (asked ?? [])
  const spaces = items.map((space) => space.trim()).filter((space) => space !== '')
  return spaces.length === 0 ? undefined : spaces
}

/**
 * Whether the client asked for structured output (`format`: `"json"` or a JSON schema). Its
 * answer must stay the model's JSON, so no Sources list is appended (`sources` still carries
 * them). Ollama reads an empty or null format as none.
 */
const structured = (format: unknown) => ![undefined, null, ''].includes(format as never)

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
  /** Which of Ollama's endpoints was asked: the lines are written in its shape. */
  endpoint: 'chat' | 'generate'
}

export function createGroundedAnswerer(fastify: FastifyInstance) {
  const { ollama } = fastify
  const prepareTurn = createTurnPreparer(fastify)
  const { interrupted } = createPassThrough(fastify)
  const { requireCompletion } = createCapabilities(fastify)

  return async function answer(
    request: FastifyRequest,
    reply: FastifyReply,
    input: GroundedRequest,
  ) {
    const { alias, base, stream } = input
    // rag_* are the gateway's, not Ollama's: they never reach the model.
    const { rag_spaces, rag_top_k, ...options } = input.options ?? {}
    const abort = abortOnClientGone(request, reply)
    // A model that cannot chat (an embedding model) is refused before anything is retrieved.
    // Without a question the turn only loads or unloads the model, which Ollama answers itself.
    if (input.messages.length > 0) await requireCompletion(base, input.endpoint, abort.signal)
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
    const presentation = {
      alias,
      sources: turn.sources,
      shape: input.endpoint === 'chat' ? asChat : asGenerate,
      note: !structured(input.extra.format),
    }
    const sendObject = (answer: ParsedLine) =>
      reply.type('application/json; charset=utf-8').send(JSON.stringify(answer))

    if (turn.nothingFound !== undefined) {
      // The index holds nothing on the question: that is the answer, and the model is not asked.
      const created_at = new Date().toISOString()
      const message = { role: 'assistant', content: turn.nothingFound }
      const said: ChatLine = { model: base, created_at, message, done: true, done_reason: 'stop' }
      if (!stream) return sendObject(presentWhole(said, presentation))
      const end = { ...said, message: { role: 'assistant', content: '' } }
      const lines = [ndjsonLine({ ...said, done: false, done_reason: undefined }), ndjsonLine(end)]
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

// `pnpm --silent cnfl ask "QUESTION"`: a grounded answer from a shell, built as POST /api/chat
// builds one (the same `ground` of @confluence-bot/index, the same RAG_* settings): the answer
// streams on stdout as the chat model writes it, then the numbered sources it was given, with
// their URLs, those it cites marked. Nothing relevant in the index: the model is not asked.
import { contextLengthOf, ground, markCited } from '@confluence-bot/index'
import { ollamaTarget, scrub } from '@confluence-bot/shared'
import { Ollama } from 'ollama'
import { hitPlace, openConfiguredIndex, parseCommand, printable, spaceFilter } from './search.ts'

export const ASK_USAGE = `Usage: cnfl ask "QUESTION" [--space KEY…] [--model NAME]

Answers from the index at LANCEDB_URI as POST /api/chat does: finds the excerpts for the
question (RAG_TOP_K, RAG_MIN_SIMILARITY, SEARCH_PER_PAGE), streams the chat model's answer on
stdout, then lists the numbered sources with their URLs (* marks those the answer cites). When
nothing in the index is relevant it says so without asking the model.

  --space KEY   answer only from this space (repeat for more)
  --model NAME  the chat model (default CHAT_MODEL)
`

export async function ask(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    space: { type: 'string', multiple: true },
    model: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  })
  if (values.help) {
    process.stdout.write(ASK_USAGE)
    return 0
  }
  const question = positionals.join(' ').trim()
  if (question === '') {
    process.stderr.write(ASK_USAGE)
    return 2
  }
  const { config, index } = await openConfiguredIndex()
  const model = values.model ?? config.CHAT_MODEL
  const target = ollamaTarget(config.OLLAMA_URL)
  const ollama = new Ollama({
    host: `${target.origin}${target.basePath}`,
    headers: target.headers,
    fetch: (input, init) => fetch(`${input}${target.query}`, init),
  })
  const respond = async () => {
    const grounding = await ground({
      index,
      messages: [{ role: 'user', content: question }],
      filters: spaceFilter(values.space),
      topK: config.RAG_TOP_K,
      perPage: config.SEARCH_PER_PAGE,
      minSimilarity: config.RAG_MIN_SIMILARITY,
      maxContextTokens: config.RAG_MAX_CONTEXT_TOKENS,
      contextLength: async () => contextLengthOf(await ollama.show({ model })),
    })
    const { retrieval } = grounding
    if (retrieval.fallback !== undefined) {
      process.stderr.write(`searched in ${retrieval.mode} mode: ${retrieval.fallback}\n`)
    }
    if (grounding.nothingFound !== undefined) {
      process.stdout.write(`${grounding.nothingFound}\n`)
      return 0
    }
    const stream = await ollama.chat({
      model,
      messages: grounding.messages,
      stream: true,
      options: { num_ctx: grounding.numCtx },
    })
    let answer = ''
    for await (const part of stream) {
      answer += part.message.content
      process.stdout.write(printable(part.message.content))
    }
    process.stdout.write('\n\nSources:\n')
    for (const source of markCited(grounding.sources, answer)) {
      const mark = source.cited ? '*' : ' '
      process.stdout.write(
        `[${source.n}]${mark} ${hitPlace(source)}\n     ${printable(source.url)}\n`,
      )
    }
    return 0
  }
  // The Ollama client's messages may quote the URL it was given, credentials included.
  return respond()
    .catch((err: Error) => {
      throw new Error(scrub(target, err.message))
    })
    .finally(() => index.close())
}

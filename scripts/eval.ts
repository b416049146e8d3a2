// `pnpm --silent cnfl eval QUESTIONS.json`: retrieval quality of the configured index on a
// question set, per search mode and per language, so an operator can measure what a change of
// tokenizer, embedding model or prefixes does on their own space before and after it.
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import {
  DEFAULT_EVAL_TOP_K,
  EVAL_MODES,
  evaluate,
  formatEvalTable,
  MAX_TOP_K,
  parseQuestions,
  QuestionSetError,
  type SearchMode,
} from '@confluence-bot/index'
import { openConfiguredIndex, parseCommand, parseCount, parseMode, spaceFilter } from './search.ts'

export const EVAL_USAGE = `Usage: cnfl eval QUESTIONS.json [--top-k N] [--mode M…] [--space KEY…] [--json]

Measures retrieval on the index at LANCEDB_URI: each question is searched in every mode
(keyword, vector, hybrid) and the rank of the page it names is noted (ranks count pages, one
hit per page). Prints hit@1, hit@5 and MRR per mode, overall and per language.
QUESTIONS.json is an array of {"question": "…", "page_id": "…" or "url": "…", "lang": "en"}
("url" matches the page's URL, its #anchor ignored; "lang" is optional, other fields are
ignored).

  --top-k N     hits asked for per question (default ${DEFAULT_EVAL_TOP_K}); a page below counts 0 in MRR
  --mode M      only this mode (repeat for more; default all three)
  --space KEY   search only this space (repeat for more)
  --json        the figures (and each question's rank per mode) as JSON
`

export async function evalQuestions(args: string[], cwd: string): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    'top-k': { type: 'string' },
    mode: { type: 'string', multiple: true },
    space: { type: 'string', multiple: true },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  })
  if (values.help) {
    process.stdout.write(EVAL_USAGE)
    return 0
  }
  if (positionals.length !== 1) {
    process.stderr.write(EVAL_USAGE)
    return 2
  }
  const topK = parseCount('top-k', values['top-k'], MAX_TOP_K)
  const modes = values.mode?.map((m) => parseMode(m) as SearchMode) ?? EVAL_MODES
  const file = positionals[0] as string
  let text: string
  try {
    text = await readFile(resolve(cwd, file), 'utf8')
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as Error).message}`)
  }
  let questions: ReturnType<typeof parseQuestions>
  try {
    questions = parseQuestions(JSON.parse(text))
  } catch (err) {
    // Not JSON (SyntaxError) or not a question set (QuestionSetError): either way the file.
    const what = err instanceof QuestionSetError ? '' : 'not valid JSON: '
    throw new Error(`${file}: ${what}${(err as Error).message}`)
  }
  const { config, index } = await openConfiguredIndex()
  try {
    process.stderr.write(
      `searching ${questions.length} questions in ${modes.join(', ')} (top ${topK ?? DEFAULT_EVAL_TOP_K})\n`,
    )
    const report = await evaluate(index, questions, {
      topK,
      modes,
      filters: spaceFilter(values.space),
      onProgress: (done, total) => {
        // One line per finished mode: the whole set takes a while on a large index.
        if (done % questions.length === 0) {
          process.stderr.write(`${modes[done / questions.length - 1]}: done (${done}/${total})\n`)
        }
      },
    })
    process.stdout.write(
      values.json ? `${JSON.stringify(report, null, 2)}\n` : formatEvalTable(report),
    )
    // All zeros usually means the wrong index (or an empty one), not a bad search.
    if (Object.values(report.ranks).every((ranks) => ranks.every((rank) => rank === 0))) {
      process.stderr.write(
        `no question found its page in any mode: does LANCEDB_URI=${config.LANCEDB_URI} hold the pages the questions name?\n`,
      )
    }
    return 0
  } finally {
    await index.close()
  }
}

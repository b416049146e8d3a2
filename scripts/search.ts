// `pnpm --silent cnfl search "QUERY"`: the index searched from a shell, through the same search
// module as POST /api/search (same settings: LANCEDB_URI, OLLAMA_URL, SEARCH_PER_PAGE), so an
// operator sees what the api would return. A table of hits on stdout (or JSON lines), the mode
// that actually ran on stderr when it is not the one asked for.
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util'
import {
  lancedbConnect,
  MAX_TOP_K,
  ollamaQueryEmbedder,
  openSearchIndex,
  type SearchHit,
  type SearchIndex,
  type SearchMode,
} from '@confluence-bot/index'
import {
  type ApiConfig,
  CHUNKS_TABLE,
  canonicalSpaceKey,
  loadApiConfig,
} from '@confluence-bot/shared'
import { UsageError } from './ingest-usage.ts'

export const SEARCH_USAGE = `Usage: cnfl search "QUERY" [--mode hybrid|vector|keyword] [--top-k N] [--space KEY…] [--json]

Searches the index at LANCEDB_URI as POST /api/search does and prints the hits: rank, score,
space, title › section, and the section's URL. The query is embedded through OLLAMA_URL by the
model the index was built with; when that model cannot answer, the search runs on keywords and
says so on stderr.

  --mode M      hybrid (default), vector or keyword
  --top-k N     hits to show (default 10, at most ${MAX_TOP_K})
  --space KEY   only hits from this space (repeat for more)
  --per-page N  at most N hits of one page (default SEARCH_PER_PAGE)
  --json        one JSON object per hit (JSON lines) instead of the table
`

const MODES: readonly SearchMode[] = ['hybrid', 'vector', 'keyword']

/**
 * parseArgs for a command whose bad options are usage errors (exit 2), said in one line as cnfl
 * says them.
 */
export function parseCommand<O extends ParseArgsOptionsConfig>(args: string[], options: O) {
  try {
    return parseArgs({ args, allowPositionals: true, options, strict: true })
  } catch (err) {
    const message = (err as Error).message
    const unknown = /^Unknown option '([^']+)'/.exec(message)?.[1]
    throw new UsageError(unknown ? `unknown option ${unknown}` : (message.split('. ')[0] as string))
  }
}

/** `--mode`, checked. */
export function parseMode(value: string | undefined): SearchMode | undefined {
  if (value === undefined) return undefined
  if (!(MODES as readonly string[]).includes(value)) {
    throw new UsageError(`--mode must be hybrid, vector or keyword, not ${value}`)
  }
  return value as SearchMode
}

/** A count option (`--top-k`, `--per-page`), checked: a whole number from 1 to `max`. */
export function parseCount(name: string, value: string | undefined, max: number) {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!/^\d+$/.test(value) || n < 1 || n > max) {
    throw new UsageError(`--${name} must be a whole number from 1 to ${max}, not ${value}`)
  }
  return n
}

/**
 * The search module on the configured index, as the api opens it. No index there yet is an
 * error that says so: an empty answer would read as "the space holds nothing on this".
 */
export async function openConfiguredIndex(): Promise<{ config: ApiConfig; index: SearchIndex }> {
  const config = loadApiConfig()
  const db = await lancedbConnect(config.LANCEDB_URI)
  const tables = await db.tableNames()
  db.close()
  if (!tables.includes(CHUNKS_TABLE)) {
    throw new Error(
      `no chunk index at LANCEDB_URI=${config.LANCEDB_URI} yet: register a source and sync it first (cnfl ingest --help)`,
    )
  }
  const index = await openSearchIndex({
    uri: config.LANCEDB_URI,
    embed: ollamaQueryEmbedder({ url: config.OLLAMA_URL }),
    perPage: config.SEARCH_PER_PAGE,
  })
  return { config, index }
}

/**
 * Text from a page or a model as a terminal may show it: control characters (an escape sequence
 * in a title could clear the screen or forge a link) become spaces; newlines and tabs stay.
 */
export const printable = (text: string) =>
  // biome-ignore lint/suspicious/noControlCharactersInRegex: they are what is removed
  text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, ' ')

/** Where a hit is: its page title, then its section's headings (printable, one line). */
export const hitPlace = (hit: Pick<SearchHit, 'title' | 'heading_path'>) =>
  printable([hit.title, hit.heading_path].filter((part) => part !== '').join(' › ')).replace(
    /\s+/g,
    ' ',
  )

/** `--space` values as the index holds space keys (`eng` is ENG), as the api reads them. */
export const spaceFilter = (spaces: string[] | undefined) =>
  spaces === undefined
    ? undefined
    : { spaces: spaces.map((space) => canonicalSpaceKey(space) ?? space) }

/** Rows of cells as aligned text; the columns named in `right` are aligned right. */
export function table(rows: readonly string[][], right: ReadonlySet<number>): string {
  const header = rows[0] as string[]
  const widths = header.map((_, col) => Math.max(...rows.map((row) => (row[col] as string).length)))
  return rows
    .map((row) =>
      row
        .map((cell, col) =>
          right.has(col)
            ? cell.padStart(widths[col] as number)
            : cell.padEnd(widths[col] as number),
        )
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

export async function search(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    mode: { type: 'string' },
    'top-k': { type: 'string' },
    space: { type: 'string', multiple: true },
    'per-page': { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  })
  if (values.help) {
    process.stdout.write(SEARCH_USAGE)
    return 0
  }
  const query = positionals.join(' ').trim()
  if (query === '') {
    process.stderr.write(SEARCH_USAGE)
    return 2
  }
  const mode = parseMode(values.mode)
  const topK = parseCount('top-k', values['top-k'], MAX_TOP_K)
  const perPage = parseCount('per-page', values['per-page'], MAX_TOP_K)
  const { index } = await openConfiguredIndex()
  try {
    const response = await index.search({
      query,
      mode,
      top_k: topK,
      per_page: perPage,
      filters: spaceFilter(values.space),
    })
    if (response.fallback !== undefined) {
      process.stderr.write(`searched in ${response.mode} mode: ${response.fallback}\n`)
    }
    if (response.results.length === 0) process.stderr.write('no hits\n')
    if (values.json) {
      for (const hit of response.results) process.stdout.write(`${JSON.stringify(hit)}\n`)
      return 0
    }
    const rows = [
      ['#', 'score', 'space', 'title › section', 'url'],
      ...response.results.map((hit, i) => [
        String(i + 1),
        hit.score.toFixed(4),
        hit.space,
        hitPlace(hit),
        hit.url,
      ]),
    ]
    process.stdout.write(`${table(rows, new Set([0, 1]))}\n`)
    return 0
  } finally {
    await index.close()
  }
}

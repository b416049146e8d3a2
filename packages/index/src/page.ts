// One page read back from the chunk index: its chunks in page order (chunk_pos), joined into the
// page's markdown. The index holds every chunk of every indexed page, so an assistant that found
// a page through search can read all of it without reaching Confluence (and sees exactly what
// grounded answers see). Never writes.

import { CHUNKS_TABLE, ChunkColumn, sqlString } from '@confluence-bot/shared'
import { lancedbConnect } from './connect.ts'
import { filterSql } from './filters.ts'

export type PageLookup = {
  /** The Confluence page id. */
  page_id?: string
  /** The page's URL (a section's URL, with its `#anchor`, names its page too). */
  url?: string
  /** Spaces the page may be in; `[]` allows none, undefined any. */
  spaces?: readonly string[]
}

export type IndexedPage = {
  page_id: string
  source_id: string
  space: string
  title: string
  /** The page's URL (without a section anchor). */
  url: string
  /** Space › ancestors › title. */
  breadcrumb: string
  updated_at: string
  version: string
  labels: string[]
  /** The chunks' markdown in page order, joined. */
  markdown: string
  /** How many chunks the page has in the index. */
  chunks: number
}

export type PageReader = {
  /** The page, or null when the index holds no such page in the allowed spaces. */
  read(lookup: PageLookup): Promise<IndexedPage | null>
  close(): Promise<void>
}

type PageRow = {
  page_id: string
  source_id: string
  space: string
  title: string
  url: string
  breadcrumb: string
  heading_path: string
  updated_at: string
  version: string
  labels: Iterable<string>
  chunk_pos: number
  text: string
}

const PAGE_COLUMNS = [
  ChunkColumn.pageId,
  ChunkColumn.sourceId,
  ChunkColumn.space,
  ChunkColumn.title,
  ChunkColumn.url,
  ChunkColumn.breadcrumb,
  ChunkColumn.headingPath,
  ChunkColumn.updatedAt,
  ChunkColumn.version,
  ChunkColumn.labels,
  ChunkColumn.chunkPos,
  ChunkColumn.text,
]

/**
 * The shortest text two chunks must share at their seam to be read as the chunker's overlap (the
 * tail of one chunk repeated at the top of the next, within a section): a shorter match could be
 * two lines that merely end and start alike, and dropping one would lose text, whereas a short
 * overlap left in only repeats a few words.
 */
export const MIN_OVERLAP_CHARS = 24

const BREADCRUMB_SEPARATOR = ' › '

/** A URL without its `#fragment`: a section's URL names its page. */
export const withoutAnchor = (url: string): string => url.split('#', 1)[0] as string

/** The origin of a URL; undefined when it is none (an export's page may have no URL). */
function originOf(url: string): string | undefined {
  try {
    return new URL(url).origin
  } catch {
    return undefined
  }
}

/**
 * The page id a Confluence URL names (`…/pages/123/Title` on Cloud and Data Center,
 * `…viewpage.action?pageId=123` on Data Center) and its origin; undefined for anything else.
 */
export function pageIdInUrl(url: string): { origin: string; pageId: string } | undefined {
  const origin = originOf(url)
  if (origin === undefined) return undefined
  const parsed = new URL(url)
  const pageId =
    /\/pages\/(\d+)(?:\/|$)/.exec(parsed.pathname)?.[1] ?? parsed.searchParams.get('pageId')
  return pageId !== null && /^\d+$/.test(pageId) ? { origin, pageId } : undefined
}

/** How many characters at the top of `next` repeat the end of `previous` (0: none). */
export function overlapLength(previous: string, next: string): number {
  const firstLine = next.split('\n', 1)[0] as string
  // The overlap is prose: a fence, a heading or a table row at the top of a chunk is its own.
  if (/^[ \t>]*(?:```|~~~|#|\|)/.test(firstLine)) return 0
  for (let end = firstLine.length; end >= MIN_OVERLAP_CHARS; end--) {
    if (end < firstLine.length && !/\s/.test(firstLine.charAt(end))) continue
    const piece = firstLine.slice(0, end)
    if (!previous.endsWith(piece)) continue
    const before = previous.charAt(previous.length - end - 1)
    if (before === '' || /\s/.test(before)) return end
  }
  return 0
}

/**
 * The markdown of a page's chunks (in page order): chunks joined by a blank line, the overlap
 * the chunker repeats at the top of the next chunk of a section given once.
 */
export function joinChunks(chunks: ReadonlyArray<{ text: string; section: string }>): string {
  let markdown = ''
  chunks.forEach((chunk, i) => {
    if (i === 0) {
      markdown = chunk.text
      return
    }
    const sameSection = chunk.section === (chunks[i - 1] as { section: string }).section
    const overlap = sameSection ? overlapLength(markdown, chunk.text) : 0
    markdown += overlap > 0 ? chunk.text.slice(overlap) : `\n\n${chunk.text}`
  })
  return markdown
}

/** The breadcrumb of the page itself: a chunk's breadcrumb without its heading path. */
function pageTrail(row: PageRow): string {
  const suffix = `${BREADCRUMB_SEPARATOR}${row.heading_path}`
  return row.heading_path !== '' && row.breadcrumb.endsWith(suffix)
    ? row.breadcrumb.slice(0, -suffix.length)
    : row.breadcrumb
}

/**
 * The rows of one page: a page id indexed by several sources is read from the one that holds
 * its latest version (then the first source id, so the answer does not change between calls).
 */
function onePage(rows: PageRow[]): PageRow[] {
  const latest = [...rows].sort(
    (a, b) => b.updated_at.localeCompare(a.updated_at) || a.source_id.localeCompare(b.source_id),
  )[0] as PageRow
  return rows
    .filter((row) => row.source_id === latest.source_id && row.page_id === latest.page_id)
    .sort((a, b) => a.chunk_pos - b.chunk_pos)
}

function toPage(rows: PageRow[]): IndexedPage {
  const first = rows[0] as PageRow
  return {
    page_id: first.page_id,
    source_id: first.source_id,
    space: first.space,
    title: first.title,
    url: withoutAnchor(first.url),
    breadcrumb: pageTrail(first),
    updated_at: first.updated_at,
    version: first.version,
    labels: [...first.labels],
    markdown: joinChunks(rows.map((row) => ({ text: row.text, section: row.url }))),
    chunks: rows.length,
  }
}

export async function openPageReader(options: {
  uri: string
  cacheMb?: number
}): Promise<PageReader> {
  const db = await lancedbConnect(options.uri, options.cacheMb)

  /** The rows matching `where` (within the allowed spaces); none without a table. */
  async function rowsWhere(where: string, spaces?: readonly string[]): Promise<PageRow[]> {
    if (!(await db.tableNames()).includes(CHUNKS_TABLE)) return []
    // Opened per read: the worker may drop and recreate the table between two reads.
    const table = await db.openTable(CHUNKS_TABLE)
    try {
      const scope = filterSql({ spaces })
      const predicate = scope === undefined ? where : `(${where}) AND ${scope}`
      const rows = await table.query().where(predicate).select(PAGE_COLUMNS).toArray()
      return rows as PageRow[]
    } finally {
      table.close()
    }
  }

  async function byUrl(url: string, spaces?: readonly string[]): Promise<PageRow[]> {
    const page = withoutAnchor(url.trim())
    // An empty URL would name every page that has none (an export's).
    if (page === '') return []
    const exact = await rowsWhere(
      `${ChunkColumn.url} = ${sqlString(page)} OR starts_with(${ChunkColumn.url}, ${sqlString(`${page}#`)})`,
      spaces,
    )
    if (exact.length > 0) return exact
    // A page's URL as another form or an old title gives it (Cloud ignores the title part):
    // the page id it names, on the same Confluence.
    const named = pageIdInUrl(page)
    if (named === undefined) return []
    const rows = await rowsWhere(`${ChunkColumn.pageId} = ${sqlString(named.pageId)}`, spaces)
    return rows.filter((row) => originOf(row.url) === named.origin)
  }

  return {
    async read(lookup) {
      if (lookup.spaces?.length === 0) return null
      const rows =
        lookup.page_id !== undefined
          ? await rowsWhere(`${ChunkColumn.pageId} = ${sqlString(lookup.page_id)}`, lookup.spaces)
          : await byUrl(lookup.url ?? '', lookup.spaces)
      return rows.length === 0 ? null : toPage(onePage(rows))
    },
    async close() {
      db.close()
    },
  }
}

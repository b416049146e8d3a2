import type { PageRef } from '../confluence/types.ts'
import { chunkBreadcrumb, pageTrail } from '../ingest/rows.ts'
import type { PageStamp, Restamp } from '../store/chunks.ts'
import type { BatchPage } from './pages.ts'

// The sync engine's decisions, apart from its I/O (sync.ts): which listed pages are converted
// again, which only get new metadata, which indexed pages may be gone, whether the gone ones may
// be deleted, and which stored chunks a restamp gives new vectors. Pure functions of what the
// listing and the index say, so each boundary is tested directly (tests/worker/processors/
// sync-plan.test.ts) as well as end to end.

/** A listed page whose text is unchanged but whose chunks' metadata is not. */
export type RestampPage = { page: PageRef; trail: string }

export type SyncPlan = {
  /** Pages to fetch, convert and embed again, each with its ancestors' titles. */
  changed: BatchPage[]
  /** Pages whose stored chunks get a new breadcrumb or labels, without a fetch. */
  restamped: RestampPage[]
  /** Indexed pages the listing left out: gone only once the source confirms it. */
  candidates: string[]
}

/** The listing as the plan reads it. */
export type Listing = {
  pages: readonly PageRef[]
  /** Space key → name; a space without a name is shown by its key. */
  spaceNames: ReadonlyMap<string, string>
}

/**
 * The titles of a page's ancestors, root first, as far as the listing reaches: a parent outside
 * it (a narrowed source) ends the trail, and so does a parent chain that loops.
 */
export function ancestorTitles(byId: ReadonlyMap<string, PageRef>, page: PageRef): string[] {
  const titles: string[] = []
  const visited = new Set<string>([page.id])
  for (let id = page.parentId; id !== undefined && !visited.has(id); ) {
    visited.add(id)
    const parent = byId.get(id)
    if (parent === undefined) break
    titles.unshift(parent.title)
    id = parent.parentId
  }
  return titles
}

/**
 * Diffs the listing against the index. A page's text depends on its version, title, space and URL
 * (links, anchors, the title heading) and on what its links and mentions resolved to (`relinked`:
 * a page it links to was created, renamed or deleted since): any change there converts it again,
 * and so does a `full` sync. Its chunks' metadata also depends on its ancestors, its space's name and its labels, which
 * change without a new version (a move, a renamed ancestor, a label added): those pages are
 * restamped from their stored chunks.
 */
export function planSync(
  { pages, spaceNames }: Listing,
  indexed: ReadonlyMap<string, PageStamp>,
  full: boolean,
  relinked: ReadonlySet<string> = new Set(),
): SyncPlan {
  const byId = new Map(pages.map((p) => [p.id, p]))
  const changed: BatchPage[] = []
  const restamped: RestampPage[] = []
  for (const page of pages) {
    const stamp = indexed.get(page.id)
    const ancestors = ancestorTitles(byId, page)
    if (
      full ||
      stamp === undefined ||
      relinked.has(page.id) ||
      stamp.version !== page.version ||
      stamp.title !== page.title ||
      stamp.space !== page.spaceKey ||
      stamp.url !== page.url
    ) {
      changed.push({ ...page, ancestors })
      continue
    }
    const trail = pageTrail(spaceNames.get(page.spaceKey) ?? page.spaceKey, ancestors, page.title)
    if (stamp.trail !== trail || !sameLabels(stamp.labels, page.labels)) {
      restamped.push({ page, trail })
    }
  }
  const candidates = [...indexed.keys()].filter((id) => !byId.has(id))
  return { changed, restamped, candidates }
}

const sameLabels = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && a.every((label, i) => label === b[i])

/**
 * Whether the pages confirmed gone may be deleted: not when they are more than `share` of the
 * indexed pages (a broken credential or a permission change looks just like a deletion), unless
 * the sync was forced. Returns the refusal, or null to delete.
 */
export function deleteRefusal(
  gone: number,
  indexed: number,
  share: number,
  force: boolean,
): string | null {
  if (gone === 0 || force || gone <= Math.floor(indexed * share)) return null
  const percent = Math.round((100 * gone) / indexed)
  return (
    `Refused to delete ${gone} of ${indexed} indexed pages (${percent}%, over ` +
    `SYNC_MAX_DELETE_SHARE=${share}): check the source's credentials and permissions, then ` +
    'sync with {"force":true} if the pages were really removed'
  )
}

/** A stored chunk as a restamp reads it. */
export type StoredStamp = {
  chunk_id: string
  page_id: string
  heading_path: string
  breadcrumb: string
  text: string
}

/** A chunk whose breadcrumb changed: its embedded text changed too, so it needs a new vector. */
export type MovedChunk = Restamp & { page_id: string; text: string }

/**
 * Splits a restamp's stored chunks: those whose breadcrumb stays only get new labels (`kept`);
 * those whose breadcrumb changes (`moved`) also need a new vector, the breadcrumb being part of
 * what is embedded.
 */
export function splitRestamp(
  rows: readonly StoredStamp[],
  pages: ReadonlyMap<string, RestampPage>,
): { kept: Restamp[]; moved: MovedChunk[] } {
  const kept: Restamp[] = []
  const moved: MovedChunk[] = []
  for (const row of rows) {
    const { page, trail } = pages.get(row.page_id) as RestampPage
    const breadcrumb = chunkBreadcrumb(trail, row.heading_path)
    const item = { chunk_id: row.chunk_id, breadcrumb, labels: [...page.labels] }
    if (breadcrumb === row.breadcrumb) kept.push(item)
    else moved.push({ ...item, page_id: row.page_id, text: row.text })
  }
  return { kept, moved }
}

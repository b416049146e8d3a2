import { CHUNKS_TABLE, ChunkColumn } from '@confluence-bot/shared'
import type { Connection, Table } from '@lancedb/lancedb'
import type { Vector } from 'apache-arrow'

/**
 * How long a listing of the spaces is reused even when the index changed since: a sync commits
 * every few pages, and a burst of page loads during one must not scan the table each time. A
 * space that syncs while the api runs is listed within this long.
 */
export const SPACES_STALE_MS = 15_000

/** A Confluence space as the index holds it: how many of its pages and chunks are searchable. */
export type IndexedSpace = { space: string; pages: number; chunks: number }

/**
 * The spaces the chunk table holds, by key, with their page and chunk counts; none while the
 * table does not exist yet (nothing has synced).
 *
 * A space is its key, whichever source or site holds it (as `rag.spaces` and search filters
 * take it), and a page is its space and page id: two sources over the same space count each
 * of its pages once, with the chunks of the copy cut into the most (positions run 0..n-1, so
 * that is the highest position + 1). Two different sites whose pages share a space key and a
 * page id are counted as one page.
 *
 * Three narrow columns are read batch by batch (no whole-table copy in memory); LanceDB
 * offers no grouped or distinct read, so each call is a scan: callers share one through
 * `spaceList`.
 */
export async function indexedSpaces(db: Connection): Promise<IndexedSpace[]> {
  if (!(await db.tableNames()).includes(CHUNKS_TABLE)) return []
  const table = await db.openTable(CHUNKS_TABLE)
  try {
    return await countSpaces(table)
  } finally {
    table.close()
  }
}

async function countSpaces(table: Table): Promise<IndexedSpace[]> {
  // Per space, per page id: the number of chunks of its longest copy.
  const found = new Map<string, Map<string, number>>()
  const rows = table.query().select([ChunkColumn.space, ChunkColumn.pageId, ChunkColumn.chunkPos])
  for await (const batch of rows) {
    const spaces = batch.getChild(ChunkColumn.space) as Vector
    const pages = batch.getChild(ChunkColumn.pageId) as Vector
    const positions = batch.getChild(ChunkColumn.chunkPos) as Vector
    for (let i = 0; i < batch.numRows; i++) {
      const space = spaces.get(i) as string
      let held = found.get(space)
      if (held === undefined) {
        held = new Map()
        found.set(space, held)
      }
      const id = pages.get(i) as string
      const chunks = Number(positions.get(i)) + 1
      if (chunks > (held.get(id) ?? 0)) held.set(id, chunks)
    }
  }
  return [...found]
    .map(([space, held]) => {
      let chunks = 0
      for (const count of held.values()) chunks += count
      return { space, pages: held.size, chunks }
    })
    .sort((a, b) => a.space.localeCompare(b.space))
}

export type SpaceListOptions = {
  /** The clock the reuse window is measured on (tests pass their own). */
  now?: () => number
}

/**
 * `indexedSpaces`, made cheap for a route every page load calls: one look at the table at a
 * time, whoever asks (callers that arrive meanwhile share its result); a result younger than
 * SPACES_STALE_MS is reused as it is; an older one is reused while the table's version is
 * unchanged (opening the table and reading its version and row count costs no scan). A failure is shared
 * by the callers waiting on it and not kept: the next call tries again. No table (nothing
 * synced yet) is not kept either, so the first sync's spaces show at once.
 */
export function spaceList(
  connection: () => Promise<Connection>,
  options: SpaceListOptions = {},
): () => Promise<IndexedSpace[]> {
  const now = options.now ?? Date.now
  let last: { spaces: IndexedSpace[]; version: string; at: number } | undefined
  let looking: Promise<IndexedSpace[]> | undefined

  const look = async (): Promise<IndexedSpace[]> => {
    const db = await connection()
    if (!(await db.tableNames()).includes(CHUNKS_TABLE)) {
      last = undefined
      return []
    }
    const table = await db.openTable(CHUNKS_TABLE)
    try {
      // The row count with the version: a table deleted and made again starts its versions
      // over, and must not pass for the one listed before.
      const version = `${await table.version()}/${await table.countRows()}`
      if (last?.version !== version) {
        last = { spaces: await countSpaces(table), version, at: now() }
      }
      last.at = now()
      return last.spaces
    } finally {
      table.close()
    }
  }

  return () => {
    if (last !== undefined && now() - last.at < SPACES_STALE_MS) return Promise.resolve(last.spaces)
    looking ??= look().finally(() => {
      looking = undefined
    })
    return looking
  }
}

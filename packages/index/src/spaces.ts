import { CHUNKS_TABLE, ChunkColumn } from '@confluence-bot/shared'
import type { Connection } from '@lancedb/lancedb'
import type { Vector } from 'apache-arrow'

/** A Confluence space as the index holds it: how many of its pages and chunks are searchable. */
export type IndexedSpace = { space: string; pages: number; chunks: number }

/**
 * The spaces the chunk table holds, by key, with their page and chunk counts; none while the
 * table does not exist yet (nothing has synced). Three narrow columns are read: the space
 * column carries a bitmap index, but a distinct read of it is not offered by LanceDB, and at
 * 100k chunks the scan is a few milliseconds.
 */
export async function indexedSpaces(db: Connection): Promise<IndexedSpace[]> {
  if (!(await db.tableNames()).includes(CHUNKS_TABLE)) return []
  const table = await db.openTable(CHUNKS_TABLE)
  try {
    const rows = await table
      .query()
      .select([ChunkColumn.space, ChunkColumn.sourceId, ChunkColumn.pageId])
      .toArrow()
    const found = new Map<string, { pages: Set<string>; chunks: number }>()
    // Batch by batch: a result with no rows has no batches (and no columns to read).
    for (const batch of rows.batches) {
      const column = (name: string) => [...(batch.getChild(name) as Vector)] as string[]
      const sources = column(ChunkColumn.sourceId)
      const pages = column(ChunkColumn.pageId)
      column(ChunkColumn.space).forEach((space, i) => {
        let entry = found.get(space)
        if (entry === undefined) {
          entry = { pages: new Set(), chunks: 0 }
          found.set(space, entry)
        }
        // A page is one page of one source: two sources may hold pages of the same id.
        entry.pages.add(`${sources[i]}\n${pages[i]}`)
        entry.chunks += 1
      })
    }
    return [...found]
      .map(([space, entry]) => ({ space, pages: entry.pages.size, chunks: entry.chunks }))
      .sort((a, b) => a.space.localeCompare(b.space))
  } finally {
    table.close()
  }
}

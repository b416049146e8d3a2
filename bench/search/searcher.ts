import {
  lancedbConnect,
  openSearchIndex,
  type SearchMode,
  VECTOR_QUERY_EF,
} from '@confluence-bot/index'
import { CHUNKS_TABLE } from '@confluence-bot/shared'

// The queries the bench times, through the search module the api and the CLI use
// (openSearchIndex), each returning the chunk ids of its top 10. The query's vector comes from
// the bench's own data (the embedder is a lookup), so only search is timed.

export type BenchQuery = { text: string; vector: Float32Array }

export type Searcher = {
  vector(q: BenchQuery): Promise<string[]>
  keyword(q: BenchQuery): Promise<string[]>
  hybrid(q: BenchQuery): Promise<string[]>
  /** The exact top 10 of the vector leg, up to 10 chunks of a page: what recall is measured on. */
  nearest(q: BenchQuery): Promise<string[]>
  /** The vector query straight to LanceDB (the index alone, without the search module). */
  raw(q: BenchQuery): Promise<string[]>
  /** The vector query without the index: LanceDB's exact scan of the table. */
  flat(q: BenchQuery): Promise<string[]>
  close(): Promise<void>
}

export async function openSearcher(uri: string, qs: readonly BenchQuery[]): Promise<Searcher> {
  const byText = new Map(qs.map((q) => [q.text, q.vector]))
  const index = await openSearchIndex({
    uri,
    // A query prefix the table may record comes first: the query's own text ends the string.
    embed: async (text) =>
      byText.get(text) ?? [...byText].find(([query]) => text.endsWith(query))?.[1] ?? null,
  })
  const search = async (q: BenchQuery, mode: SearchMode, per_page?: number) => {
    const response = await index.search({ query: q.text, mode, top_k: 10, per_page })
    if (response.mode !== mode)
      throw new Error(`search fell back to ${response.mode}: ${response.fallback}`)
    return response.results.map((hit) => hit.chunk_id)
  }
  const db = await lancedbConnect(uri)
  const table = await db.openTable(CHUNKS_TABLE)
  return {
    vector: (q) => search(q, 'vector'),
    keyword: (q) => search(q, 'keyword'),
    hybrid: (q) => search(q, 'hybrid'),
    nearest: (q) => search(q, 'vector', 10),
    async raw(q) {
      const rows = await table
        .query()
        .nearestTo(q.vector)
        .distanceType('cosine')
        .ef(VECTOR_QUERY_EF)
        .select(['chunk_id', '_distance'])
        .limit(10)
        .toArray()
      return rows.map((row) => row.chunk_id as string)
    },
    async flat(q) {
      const rows = await table
        .query()
        .nearestTo(q.vector)
        .distanceType('cosine')
        .bypassVectorIndex()
        .select(['chunk_id', '_distance'])
        .limit(10)
        .toArray()
      return rows.map((row) => row.chunk_id as string)
    },
    async close() {
      await index.close()
      table.close()
      db.close()
    },
  }
}

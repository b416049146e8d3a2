import {
  openSearchIndex,
  VECTOR_INDEX_MAX_PARTITIONS,
  VECTOR_INDEX_ROWS_PER_PARTITION,
  VECTOR_QUERY_EF,
  vectorIndex,
  vectorIndexPartitions,
  vectorQueryEf,
} from '@confluence-bot/index'
import t from 'tap'
import { type RowSpec, tempUri, writeTable } from './search-helpers.ts'

t.test('one partition for a small table, more as it grows, never past the cap', async (t) => {
  t.equal(vectorIndexPartitions(0), 1)
  t.equal(vectorIndexPartitions(300), 1)
  t.equal(vectorIndexPartitions(VECTOR_INDEX_ROWS_PER_PARTITION), 1)
  t.equal(vectorIndexPartitions(VECTOR_INDEX_ROWS_PER_PARTITION * 6), 6)
  t.equal(vectorIndexPartitions(100_000), 1, 'one graph at 100k rows')
  t.equal(vectorIndexPartitions(100_000_000), VECTOR_INDEX_MAX_PARTITIONS)
})

t.test('a query searches at least as wide as the rows it asks for', async (t) => {
  t.equal(vectorQueryEf(10), VECTOR_QUERY_EF)
  t.equal(vectorQueryEf(VECTOR_QUERY_EF), VECTOR_QUERY_EF)
  t.equal(vectorQueryEf(480), 480)
})

t.test('an indexed table answers when the per-page cap widens the vector leg', async (t) => {
  // One page holds almost every chunk near the query: capped to 2 of its chunks, the first
  // candidates leave too few hits, and the leg is asked again for more rows than the default
  // ef (LanceDB refuses a query whose ef is below its limit).
  const uri = tempUri(t)
  // Spread out (HNSW over quantised near-duplicates reaches only some of them): the big
  // page's chunks around the query's direction, the other pages' further away.
  const around = (i: number, spread: number, x: number) => [
    1,
    x + spread * Math.sin(i * 1.7),
    spread * Math.sin(i * 2.3 + 1),
    spread * Math.cos(i * 3.1),
  ]
  const rows: RowSpec[] = [
    ...Array.from({ length: 390 }, (_, i) => ({
      page_id: 'big',
      chunk_pos: i,
      text: `big ${i}`,
      vector: around(i, 0.4, 0),
    })),
    ...Array.from({ length: 10 }, (_, i) => ({
      page_id: `other${i}`,
      chunk_pos: 0,
      text: `other ${i}`,
      vector: around(i, 0.2, 1.5),
    })),
  ]
  const table = await writeTable(uri, rows)
  await table.createIndex('vector', { config: vectorIndex(rows.length) })
  t.ok((await table.listIndices()).some((i) => i.indexType === 'IvfHnswSq'))
  const index = await openSearchIndex({ uri, embed: async () => new Float32Array([1, 0, 0, 0]) })
  t.teardown(() => index.close())
  const found = await index.search({ query: 'big', mode: 'vector', top_k: 10, per_page: 2 })
  t.equal(found.mode, 'vector')
  t.equal(found.results.length, 10)
  t.equal(found.results.filter((hit) => hit.page_id === 'big').length, 2)
})

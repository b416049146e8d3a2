import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  FTS_INDEX_OPTIONS,
  ftsIndexCurrent,
  ftsIndexStale,
  lancedbConnect,
  openSearchIndex,
} from '@confluence-bot/index'
import { CHUNKS_TABLE, ChunkColumn } from '@confluence-bot/shared'
import { Index } from '@lancedb/lancedb'
import { Redis } from 'ioredis'
import t from 'tap'
import { openChunkStore } from '../../services/worker/src/store/chunks.ts'
import { startRedis } from '../helpers/redis.ts'
import { chunkRow } from './search-helpers.ts'

// The search module over tables the worker's store wrote and maintained: rows written after
// maintain() built the indices are found by both legs, and a full-text index built with another
// tokenizer is rebuilt by the next maintain().

const server = await startRedis()
t.teardown(() => server.stop())

async function store(t: Tap, vectorIndexMinRows = 300) {
  const dir = await mkdtemp(join(tmpdir(), 'cnfl-search-store-'))
  const redis = new Redis(server.url)
  const chunks = await openChunkStore({
    uri: dir,
    redis,
    vectorIndexMinRows,
    lockKey: `test:lock:${dir}`,
    versionGraceMs: 0,
  })
  t.teardown(async () => {
    await chunks.close()
    await redis.quit()
    await rm(dir, { recursive: true, force: true })
  })
  const table = async () => (await lancedbConnect(dir)).openTable(CHUNKS_TABLE)
  return { dir, chunks, table }
}
type Tap = { teardown(fn: () => unknown): void }

/** A unit vector of 8 values that depends only on `seed`. */
function vec(seed: number): number[] {
  let x = (seed * 2654435761 + 1) >>> 0
  const v = Array.from({ length: 8 }, () => {
    x = (x * 1103515245 + 12345) >>> 0
    return x / 2 ** 32 - 0.5
  })
  const norm = Math.hypot(...v)
  return v.map((n) => n / norm)
}

t.test('rows written since the indices were built are found by both legs', async (t) => {
  const { dir, chunks, table } = await store(t)
  await chunks.useEmbedding('m1', 8)
  const rows = Array.from({ length: 320 }, (_, i) =>
    chunkRow(
      { page_id: `p${i}`, chunk_pos: 0, text: `routine page ${i} about things`, vector: vec(i) },
      'm1',
    ),
  )
  await chunks.replacePages('s1', [], rows)
  const report = await chunks.maintain()
  t.ok(report.indices.includes('vector_idx'))
  t.ok(report.indices.includes('text_idx'))
  const fts = (await (await table()).listIndices()).find((i) => i.name === 'text_idx')
  t.ok(fts && ftsIndexCurrent(fts), 'maintain() builds the full-text index search expects')

  await chunks.replacePages(
    's1',
    [],
    [
      chunkRow(
        { page_id: 'fresh', chunk_pos: 0, text: 'zeppelin hangar', vector: vec(9999) },
        'm1',
      ),
    ],
  )
  const stats = await (await table()).listIndices()
  for (const index of stats) t.equal(index.numUnindexedRows, 1, `${index.name}: one row unindexed`)

  const embed = async (text: string) => (text === 'zeppelin' ? Float32Array.from(vec(9999)) : null)
  const index = await openSearchIndex({ uri: dir, embed })
  t.teardown(() => index.close())
  for (const mode of ['keyword', 'vector', 'hybrid'] as const) {
    const res = await index.search({ query: 'zeppelin', mode, top_k: 3 })
    t.equal(res.mode, mode)
    t.equal(res.results[0]?.page_id, 'fresh', `${mode} finds the unindexed row`)
  }
  const vector = await index.search({ query: 'zeppelin', mode: 'vector', top_k: 1 })
  t.ok((vector.results[0]?.similarity as number) > 0.99)
})

t.test('a full-text index built with another tokenizer is rebuilt by maintain()', async (t) => {
  const { chunks, table } = await store(t)
  await chunks.replacePages(
    's1',
    [],
    [chunkRow({ page_id: 'a', chunk_pos: 0, text: 'ドキュメントの検索機能について' })],
  )
  const before = await table()
  // What an earlier release built: LanceDB's default tokenizer.
  await before.createIndex(ChunkColumn.text, { config: Index.fts() })
  t.equal(await ftsIndexStale(before), true)
  await chunks.maintain()
  const after = await table()
  t.equal(await ftsIndexStale(after), false)
  const fts = (await after.listIndices()).find((i) => i.indexType === 'FTS')
  t.equal(
    (fts?.indexDetails as Record<string, unknown> | undefined)?.base_tokenizer,
    FTS_INDEX_OPTIONS.baseTokenizer,
  )
  t.equal((await chunks.maintain()).indices.includes('text_idx'), true, 'kept when current')
})

t.test('similarity is the cosine of the vectors, for indexed rows too', async (t) => {
  // The index reports 2 − 2·cos for the rows it holds (1 − cos for rows written since), so the
  // relevance floor of grounded answers would drop relevant excerpts if it read that as 1 − cos.
  const { dir, chunks, table } = await store(t, 1000)
  const dim = 64
  let x = 12345
  const random = () => {
    x = (x * 1103515245 + 12345) >>> 0
    return x / 2 ** 32 - 0.5
  }
  const unit = () => {
    const v = Array.from({ length: dim }, random)
    const norm = Math.hypot(...v)
    return v.map((n) => n / norm)
  }
  const vectors = Array.from({ length: 1200 }, unit)
  await chunks.useEmbedding('m1', dim)
  await chunks.replacePages(
    's1',
    [],
    vectors.map((vector, i) =>
      chunkRow({ page_id: `p${i}`, chunk_pos: 0, text: `note ${i}`, vector }, 'm1'),
    ),
  )
  t.ok((await chunks.maintain()).indices.includes('vector_idx'))
  const probe = unit()
  const raw = await (await table())
    .query()
    .nearestTo(probe)
    .distanceType('cosine')
    .select(['page_id', '_distance'])
    .limit(1)
    .toArray()
  const cos = (v: number[]) => v.reduce((sum, n, i) => sum + n * (probe[i] as number), 0)
  const first = vectors[Number(raw[0].page_id.slice(1))] as number[]
  t.ok(Math.abs(raw[0]._distance - (2 - 2 * cos(first))) < 0.01, 'the index says 2 − 2·cos')

  const index = await openSearchIndex({ uri: dir, embed: async () => Float32Array.from(probe) })
  t.teardown(() => index.close())
  /** Every hit's similarity is its cosine, within `tolerance`; the vector leg ranks by it. */
  async function cosines(tolerance: number, what: string) {
    for (const mode of ['vector', 'hybrid'] as const) {
      const res = await index.search({ query: 'note', mode, top_k: 10 })
      t.equal(res.results.length, 10)
      for (const hit of res.results) {
        const expected = cos(vectors[Number(hit.page_id.slice(1))] as number[])
        const off = Math.abs((hit.similarity as number) - expected)
        t.ok(off < tolerance, `${what}, ${mode} ${hit.page_id}: off by ${off}`)
      }
      if (mode === 'vector') {
        const similarities = res.results.map((hit) => hit.similarity as number)
        t.same(
          similarities,
          [...similarities].sort((a, b) => b - a),
          'ranked by it',
        )
      }
    }
  }
  // The index holds every row: read from its distances (scalar quantisation: close, not exact).
  await cosines(0.02, 'all indexed')
  // A row written since: distances of two kinds in one result, so the stored vectors decide.
  const fresh = unit()
  vectors.push(fresh)
  await chunks.replacePages(
    's1',
    [],
    [chunkRow({ page_id: 'p1200', chunk_pos: 0, text: 'note 1200', vector: fresh }, 'm1')],
  )
  await cosines(1e-5, 'one row unindexed')
})

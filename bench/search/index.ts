import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadWorkerConfig } from '@confluence-bot/shared'
import { Redis } from 'ioredis'
import { type ChunkStore, openChunkStore } from '../../services/worker/src/store/chunks.ts'
import { startRedis } from '../../tests/helpers/redis.ts'
import { note, reporter, setting } from '../lib/report.ts'
import { median, percentile } from '../lib/stats.ts'
import { bruteTopK } from './brute.ts'
import { corpus, DIM, type Kind, random, vectorSpace } from './data.ts'
import { ragFigures, ragFirstToken } from './rag.ts'
import { openSearcher, type Searcher } from './searcher.ts'
import { CHUNKS_PER_PAGE, MODEL, pageRows, rowOf, SOURCE } from './table.ts'

// `pnpm bench search`: search over a real chunk table at 10k and 100k chunks.
// - Data (performance-notes.md §1.0): 768-d unit vectors around 500 cluster centres, "structured"
//   (low intrinsic dimension, like text embeddings; BENCH_SEARCH_DATA=hard for the pessimistic
//   set), 20 chunks a page, each page about one cluster, ~1.5 KB of pseudo-word sentences per
//   chunk (Zipf vocabulary + the cluster's topic words), so BM25 sees realistic statistics.
// - Written the way a first sync writes (the worker's store, replacePages per batch of pages,
//   real Redis for its lock), then indexed by the worker's maintain(), with the worker's default
//   VECTOR_INDEX_MIN_ROWS.
// - Queries: vector, keyword and hybrid, p50/p95 after warm-up; recall@10 of the vector query
//   against the exact top-10; the brute-force Float32Array scan (the exact top-10) timed in the
//   same run as the floor.
// - Then a sync-style upsert of 5% (half changed pages, half new ones) through the store, the
//   figures again with the new rows not yet indexed, maintain() (what the pipeline queues after
//   a sync) and the figures again.
// - rag_first_token_added_ms_p95 (and p50): first token of a streamed /api/chat with retrieval
//   minus without, at ROWS chunks (bench/search/rag.ts).
// Knobs: BENCH_SEARCH_ROWS (100000), BENCH_SEARCH_SMALL_ROWS (10000), BENCH_SEARCH_QUERIES (100).

const BENCH = 'search'
const report = reporter(BENCH)
const log = (message: string) => note(BENCH, message)
const ROWS = setting('BENCH_SEARCH_ROWS', 100_000, true)
const SMALL_ROWS = setting('BENCH_SEARCH_SMALL_ROWS', 10_000, true)
const QUERIES = setting('BENCH_SEARCH_QUERIES', 100, true)
const KIND: Kind = process.env.BENCH_SEARCH_DATA === 'hard' ? 'hard' : 'structured'
const CLUSTERS = 500
const PAGES_PER_WRITE = 50
const UPSERT_SHARE = 0.05
// The worker's default (a deployment's setting is what it configures).
const MIN_ROWS = loadWorkerConfig({}).VECTOR_INDEX_MIN_ROWS

const point = vectorSpace(KIND, CLUSTERS, 1)
const text = corpus(CLUSTERS, 2)

type Query = { text: string; vector: Float32Array }

function queries(count: number): Query[] {
  const r = random(99)
  const draw = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r())
  const seen = new Set<string>()
  const out: Query[] = []
  while (out.length < count) {
    const k = Math.floor(r() * CLUSTERS)
    const q = text.query(k, r)
    if (seen.has(q)) continue
    seen.add(q)
    out.push({ text: q, vector: point(k, draw) })
  }
  return out
}

const label = (rows: number) => (rows >= 1000 ? `${Math.round(rows / 1000)}k` : String(rows))

async function dirMb(path: string): Promise<number> {
  let bytes = 0
  for (const entry of await readdir(path, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) bytes += (await stat(join(entry.parentPath, entry.name))).size
  }
  return bytes / 2 ** 20
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now()
  const value = await fn()
  return [value, performance.now() - started]
}

/** Writes pages [from, to) at `version` through the store, PAGES_PER_WRITE pages a call. */
async function writePages(
  store: ChunkStore,
  pages: number[],
  version: number,
  vectors: Float32Array,
): Promise<void> {
  for (let i = 0; i < pages.length; i += PAGES_PER_WRITE) {
    const batch = pages.slice(i, i + PAGES_PER_WRITE)
    const rows = batch.flatMap((page) =>
      pageRows({ page, version }, CLUSTERS, point, text, vectors),
    )
    await store.replacePages(
      SOURCE,
      batch.map((page) => `p${page}`),
      rows,
    )
  }
}

type Figures = Record<string, number>

/** Every query figure for the table at `uri`, holding `rows` rows of `vectors`. */
async function measure(
  searcher: Searcher,
  qs: Query[],
  vectors: Float32Array,
  rows: number,
): Promise<Figures> {
  const figures: Figures = {}
  const warm = qs.slice(0, 5)
  // The floor and the ground truth: the exact top-10 of every query.
  for (const q of warm) bruteTopK(vectors, rows, q.vector)
  const brute: number[] = []
  const exact = qs.map((q) => {
    const started = performance.now()
    const hits = bruteTopK(vectors, rows, q.vector)
    brute.push(performance.now() - started)
    return new Set(hits.map((h) => h.row))
  })
  figures.bruteforce_p50_ms = median(brute)

  // `raw`: the same vector query straight to LanceDB, so the index's share is seen apart
  // from the search module's (filters, per-page cap, the hits' columns, snippets).
  for (const mode of ['vector', 'keyword', 'hybrid', 'raw'] as const) {
    for (const q of warm) await searcher[mode](q)
    const samples: number[] = []
    for (const q of qs) samples.push((await timed(() => searcher[mode](q)))[1])
    figures[`${mode}_p50_ms`] = median(samples)
    figures[`${mode}_p95_ms`] = percentile(samples, 95)
  }
  // Recall of the indexed vector search: its top 10 with up to 10 chunks of a page (the
  // default cap of 2 a page would hide exact neighbours on purpose).
  let found = 0
  let foundRaw = 0
  for (const [i, q] of qs.entries()) {
    found += (await searcher.nearest(q)).filter((id) => exact[i]?.has(rowOf(id))).length
    foundRaw += (await searcher.raw(q)).filter((id) => exact[i]?.has(rowOf(id))).length
  }
  figures.recall10 = found / (10 * qs.length)
  // The index alone (ef = VECTOR_QUERY_EF, limit 10; search asks for more candidates).
  figures.raw_recall10 = foundRaw / (10 * qs.length)
  figures.vector_vs_bruteforce_ratio = (figures.vector_p50_ms as number) / figures.bruteforce_p50_ms
  figures.raw_vs_bruteforce_ratio = (figures.raw_p50_ms as number) / figures.bruteforce_p50_ms
  return figures
}

function print(figures: Figures, suffix: string) {
  for (const [name, value] of Object.entries(figures)) {
    const unit = name.endsWith('_ms') ? 'ms' : name.includes('recall') ? 'fraction' : 'ratio'
    report(`${name}${suffix}`, value, unit)
  }
}

async function build(rows: number, redis: Redis, dir: string, vectors: Float32Array) {
  const uri = join(dir, `lancedb-${label(rows)}`)
  const store = await openChunkStore({
    uri,
    redis,
    vectorIndexMinRows: MIN_ROWS,
    lockKey: `bench:lock:${uri}`,
  })
  await store.useEmbedding(MODEL, DIM)
  const pages = Array.from({ length: Math.ceil(rows / CHUNKS_PER_PAGE) }, (_, i) => i)
  const [, writeMs] = await timed(() => writePages(store, pages, 1, vectors))
  const [maintained, maintainMs] = await timed(() => store.maintain())
  log(
    `${label(rows)}: written in ${(writeMs / 1000).toFixed(1)} s, maintain: ${JSON.stringify(maintained)}`,
  )
  return { uri, store, writeMs, maintainMs }
}

async function main() {
  const total = Math.ceil((ROWS * (1 + UPSERT_SHARE)) / CHUNKS_PER_PAGE) * CHUNKS_PER_PAGE
  const vectors = new Float32Array(total * DIM)
  const qs = queries(QUERIES)
  const cleanups: Array<() => unknown> = []
  const dir = await mkdtemp(join(tmpdir(), 'cnfl-bench-search-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  const redisServer = await startRedis()
  cleanups.unshift(() => redisServer.stop())
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: null })
  cleanups.unshift(() => redis.quit())
  try {
    log(
      `data: ${KIND}, ${CLUSTERS} clusters, ${QUERIES} queries; vector index from ${MIN_ROWS} rows`,
    )
    // 10k: the small table, where the index has to beat a plain scan by a wide margin.
    {
      const small = await build(SMALL_ROWS, redis, dir, vectors)
      const searcher = await openSearcher(small.uri, qs)
      const figures = await measure(searcher, qs, vectors, SMALL_ROWS)
      // LanceDB's own exact scan of the same table: what a table without the index pays.
      const flat: number[] = []
      for (const q of qs.slice(0, 30)) flat.push((await timed(() => searcher.flat(q)))[1])
      figures.vector_flat_p50_ms = median(flat)
      await searcher.close()
      await small.store.close()
      print(figures, `_${label(SMALL_ROWS)}`)
      report(`write_s_${label(SMALL_ROWS)}`, small.writeMs / 1000, 's')
      report(`maintain_s_${label(SMALL_ROWS)}`, small.maintainMs / 1000, 's')
    }

    // 100k: written, indexed, measured; then a sync-style upsert of 5%.
    const large = await build(ROWS, redis, dir, vectors)
    const suffix = `_${label(ROWS)}`
    report(`write_s${suffix}`, large.writeMs / 1000, 's')
    report(`maintain_s${suffix}`, large.maintainMs / 1000, 's')
    report(`table_mb${suffix}`, await dirMb(join(large.uri, 'chunks.lance', 'data')), 'MB')
    report(`index_mb${suffix}`, await dirMb(join(large.uri, 'chunks.lance', '_indices')), 'MB')
    let searcher = await openSearcher(large.uri, qs)
    print(await measure(searcher, qs, vectors, ROWS), suffix)
    await searcher.close()

    // What grounding adds to a chat's first token, on this table.
    const rag = ragFigures(
      await ragFirstToken(
        large.uri,
        redisServer.url,
        qs.map((q) => q.text),
      ),
    )
    for (const [name, value] of Object.entries(rag)) report(name, value, 'ms')

    const pages = ROWS / CHUNKS_PER_PAGE
    const touched = Math.round((pages * UPSERT_SHARE) / 2)
    const r = random(5)
    const changed = new Set<number>()
    while (changed.size < touched) changed.add(Math.floor(r() * pages))
    const added = Array.from({ length: touched }, (_, i) => pages + i)
    const [, upsertMs] = await timed(async () => {
      await writePages(large.store, [...changed], 2, vectors)
      await writePages(large.store, added, 1, vectors)
    })
    const rowsAfter = (pages + touched) * CHUNKS_PER_PAGE
    report(`upsert_s${suffix}`, upsertMs / 1000, 's')
    // Before the maintain job: new and rewritten rows are outside the index, scanned by every query.
    searcher = await openSearcher(large.uri, qs)
    print(await measure(searcher, qs, vectors, rowsAfter), `${suffix}_before_maintain`)
    const [, maintainMs] = await timed(() => large.store.maintain())
    report(`maintain_s${suffix}_after_sync`, maintainMs / 1000, 's')
    print(await measure(searcher, qs, vectors, rowsAfter), `${suffix}_after_sync`)
    await searcher.close()
    await large.store.close()
  } finally {
    for (const fn of cleanups) await fn()
  }
}

await main()

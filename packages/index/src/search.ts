// The read side of the chunk index: hybrid (full-text BM25 + vector, fused through LanceDB's
// reranker API: distribution-based score fusion by default, see fusion.ts), vector-only and
// keyword-only search, filters applied inside every leg, at most a few chunks per page. Never
// writes.
//
// CONTRACT (fixed; the implementation fills it in): api, CLI and bench code against these types.

import { createRequire } from 'node:module'
import { CHUNKS_TABLE, ChunkColumn, EmbedMeta } from '@confluence-bot/shared'
import { MatchQuery, type rerankers, type Table } from '@lancedb/lancedb'
import type {
  Float32 as ArrowFloat32,
  Table as ArrowTable,
  FixedSizeList,
  RecordBatch,
  Schema,
  Vector,
} from 'apache-arrow'
import { lancedbConnect } from './connect.ts'
import { filterSql, matchesNothing, SearchRequestError } from './filters.ts'
import { ScoreFusionReranker } from './fusion.ts'
import { keywordQuery } from './keyword-query.ts'
import { snippet } from './snippet.ts'
import { vectorQueryEf } from './vector-index.ts'

// LanceDB checks Arrow objects against the CommonJS build of apache-arrow it loads itself; an
// ESM import would load the other build (see the worker's store/arrow.ts).
const arrow = createRequire(import.meta.url)('apache-arrow') as typeof import('apache-arrow')

export type SearchMode = 'hybrid' | 'vector' | 'keyword'

export type SearchFilters = {
  /** Space keys a hit may come from; `[]` matches nothing (a key limited to no space). */
  spaces?: readonly string[]
  source_ids?: readonly string[]
  /** A hit's page carries at least one of these labels. */
  labels?: readonly string[]
  /** ISO 8601: only page versions updated after this time. */
  updated_after?: string
}

export type SearchRequest = {
  query: string
  /** Hits wanted (default 10). */
  top_k?: number
  /** Default 'hybrid'. */
  mode?: SearchMode
  filters?: SearchFilters
  /** At most this many chunks of one page among the hits (default: the index's setting, 2). */
  per_page?: number
}

export type SearchHit = {
  chunk_id: string
  page_id: string
  source_id: string
  title: string
  breadcrumb: string
  heading_path: string
  /** The section's URL (page URL with the heading anchor). */
  url: string
  space: string
  updated_at: string
  labels: string[]
  /** Higher is better; comparable within one response only. */
  score: number
  /** Cosine similarity of the chunk's vector to the query's (when the vector leg found it). */
  similarity?: number
  /** BM25 score of the keyword leg (when it found it). */
  keyword_score?: number
  text: string
  /** A short extract of `text` around the query's terms. */
  snippet: string
}

export type SearchResponse = {
  /** The mode that actually ran. */
  mode: SearchMode
  /** Why it is not the one asked for (no vectors in the table, embedding model unreachable…). */
  fallback?: string
  results: SearchHit[]
}

/**
 * The vector of `text` from `model`; null when the model cannot be reached. The search module
 * calls it with the table's recorded model and the query prefix the table records already put
 * before the query.
 */
export type QueryEmbedder = (text: string, model: string) => Promise<Float32Array | null>

export type SearchIndexOptions = {
  /** LANCEDB_URI: a directory or s3://… */
  uri: string
  embed: QueryEmbedder
  /** Default at most this many chunks of one page in the hits (SEARCH_PER_PAGE, default 2). */
  perPage?: number
  cacheMb?: number
  /**
   * Fuses hybrid search's two legs (default: a ScoreFusionReranker, DBSF with the legs weighed
   * alike). Any reranker of LanceDB's shape, e.g. `await rerankers.RRFReranker.create()`.
   */
  reranker?: rerankers.Reranker
}

export type SearchIndex = {
  search(request: SearchRequest): Promise<SearchResponse>
  close(): Promise<void>
}

// ---------------------------------------------------------------------------------------------
// The implementation

/** Hits a request may ask for at most. */
export const MAX_TOP_K = 100
export const DEFAULT_TOP_K = 10
export const DEFAULT_PER_PAGE = 2
/** Characters of a query that are searched (a pasted page says no more past this). */
export const MAX_QUERY_CHARS = 2000
// Each leg fetches this many candidates per hit wanted, so that capping the chunks of one page
// still leaves k hits; when it does not, the legs are asked again for more, up to MAX_CANDIDATES.
const CANDIDATES_PER_HIT = 3
const MIN_CANDIDATES = 20
const MAX_CANDIDATES = 1600

const HAS_VECTOR = `${ChunkColumn.embedModel} != ''`

/**
 * Columns a hit is built from, read by the legs themselves: each column LanceDB reads costs about
 * as much for 120 rows as for 10, and a second read of the final hits by row id cost a whole
 * query more (10k chunks: 3.1 ms for a leg of 30 with these columns against 2.0 ms + 2.0 ms for
 * the leg with page and source ids only and the take of the hits).
 */
const HIT_COLUMNS = [
  ChunkColumn.chunkId,
  ChunkColumn.pageId,
  ChunkColumn.sourceId,
  ChunkColumn.title,
  ChunkColumn.breadcrumb,
  ChunkColumn.headingPath,
  ChunkColumn.url,
  ChunkColumn.space,
  ChunkColumn.updatedAt,
  ChunkColumn.labels,
  ChunkColumn.text,
]

/** What the table records about its vectors, read again only when its version changes. */
type Recorded = {
  model: string
  dim: number
  /** Put before the query text when it is embedded ('' for none). */
  queryPrefix: string
}

type OpenTable = {
  table: Table
  version: number
  embedding: Recorded | null
  /** Some row has a vector (asked once per version, when a search needs to know). */
  vectors?: boolean
  /** The vector index holds every row (asked once per version, by vector searches). */
  indexed?: boolean
}

/** A leg's result: its rows, and each column as Arrow gives it (looked up once per leg). */
type Leg = { rows: ArrowTable; columns: Map<string, Vector | null> }

/** A row of a leg's result: its columns read straight from Arrow (no row objects). */
type Candidate = {
  leg: Leg
  at: number
  score: number
  similarity?: number
  keyword_score?: number
}

function recordedEmbedding(schema: Schema): Recorded | null {
  const field = schema.fields.find((f) => f.name === ChunkColumn.vector)
  const model = schema.metadata.get(EmbedMeta.model)
  if (field === undefined || model === undefined) return null
  const dim = (field.type as FixedSizeList).listSize
  return { model, dim, queryPrefix: schema.metadata.get(EmbedMeta.queryPrefix) ?? '' }
}

function checkCount(name: string, value: number | undefined, fallback: number, max: number) {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new SearchRequestError(`${name} must be a whole number from 1 to ${max}, not ${value}`)
  }
  return value
}

function cosine(a: Float32Array, b: ArrayLike<number>): number {
  let dot = 0
  let na = 0
  let nb = 0
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number
    const y = b[i] as number
    dot += x * y
    na += x * x
    nb += y * y
  }
  return dot / Math.sqrt(na * nb)
}

/** A zero vector has no direction: LanceDB's cosine distance is NaN; it is similar to nothing. */
const similarityOf = (value: number) => (Number.isNaN(value) ? 0 : value)

/** Column `name` of a leg's rows (a leg that found nothing has no columns: then no values). */
function columnOf<T>(rows: ArrowTable, name: string): T[] {
  return [...((rows.getChild(name) as Iterable<T> | null) ?? [])]
}

function legOf(rows: ArrowTable): Leg {
  return { rows, columns: new Map() }
}

/** Column `name` of a leg, looked up in its Arrow table once. */
function legColumn(leg: Leg, name: string): Vector | null {
  let column = leg.columns.get(name)
  if (column === undefined) {
    column = leg.rows.getChild(name)
    leg.columns.set(name, column)
  }
  return column
}

/** The value of column `name` of a candidate's row. */
const cell = (c: Candidate, name: string): unknown => (legColumn(c.leg, name) as Vector).get(c.at)

/** An Arrow record batch of a leg's row ids and scores in rank order, for the reranker. */
function rankBatch(ids: bigint[], scores: number[], column: '_distance' | '_score'): RecordBatch {
  const idVector = arrow.makeVector(BigUint64Array.from(ids))
  const scoreVector = arrow.makeVector(Float32Array.from(scores))
  return new arrow.RecordBatch({ _rowid: idVector.data[0], [column]: scoreVector.data[0] } as never)
}

/**
 * At most `perPage` candidates of one page, best first, cut to `k`. `complete` is false when a
 * leg may hold more candidates than it was asked for and fewer than `k` survived the cap.
 */
function capPerPage(ranked: readonly Candidate[], k: number, perPage: number): Candidate[] {
  const perPageSeen = new Map<string, number>()
  const out: Candidate[] = []
  for (const candidate of ranked) {
    const page = `${cell(candidate, ChunkColumn.sourceId)}\n${cell(candidate, ChunkColumn.pageId)}`
    const seen = perPageSeen.get(page) ?? 0
    if (seen >= perPage) continue
    perPageSeen.set(page, seen + 1)
    out.push(candidate)
    if (out.length === k) break
  }
  return out
}

function toHit(candidate: Candidate, query: string): SearchHit {
  const get = (name: string) => cell(candidate, name) as string
  const text = get(ChunkColumn.text)
  const hit: SearchHit = {
    chunk_id: get(ChunkColumn.chunkId),
    page_id: get(ChunkColumn.pageId),
    source_id: get(ChunkColumn.sourceId),
    title: get(ChunkColumn.title),
    breadcrumb: get(ChunkColumn.breadcrumb),
    heading_path: get(ChunkColumn.headingPath),
    url: get(ChunkColumn.url),
    space: get(ChunkColumn.space),
    updated_at: get(ChunkColumn.updatedAt),
    labels: [...(cell(candidate, ChunkColumn.labels) as Iterable<string>)],
    score: candidate.score,
    text,
    snippet: snippet(text, query),
  }
  if (candidate.similarity !== undefined) hit.similarity = candidate.similarity
  if (candidate.keyword_score !== undefined) hit.keyword_score = candidate.keyword_score
  return hit
}

export async function openSearchIndex(options: SearchIndexOptions): Promise<SearchIndex> {
  const db = await lancedbConnect(options.uri, options.cacheMb)
  const defaultPerPage = checkCount('perPage', options.perPage, DEFAULT_PER_PAGE, MAX_TOP_K)
  const reranker = options.reranker ?? new ScoreFusionReranker()
  let open: OpenTable | null = null

  /** The table as it is now (null: there is none yet), its recorded embedding up to date. */
  async function current(): Promise<OpenTable | null> {
    // Searches run concurrently and one may drop the shared handle (below) while another awaits:
    // each works on the handle it started with.
    let t = open
    if (t === null) {
      if (!(await db.tableNames()).includes(CHUNKS_TABLE)) return null
      t = { table: await db.openTable(CHUNKS_TABLE), version: -1, embedding: null }
      open = t
    }
    const version = await t.table.version()
    if (version !== t.version) {
      t.embedding = recordedEmbedding(await t.table.schema())
      t.version = version
      delete t.vectors
      delete t.indexed
    }
    return t
  }

  async function hasVectors(t: OpenTable): Promise<boolean> {
    if (t.vectors === undefined) {
      const one = await t.table
        .query()
        .where(HAS_VECTOR)
        .select([ChunkColumn.chunkId])
        .limit(1)
        .toArray()
      t.vectors = one.length > 0
    }
    return t.vectors
  }

  /** The query's vector, or why the search runs on keywords instead. */
  async function queryVector(t: OpenTable, query: string): Promise<Float32Array | string> {
    const recorded = t.embedding
    if (recorded === null) {
      return 'the index has no vectors yet (no embedding model has filled it)'
    }
    if (!(await hasVectors(t))) {
      return `no chunk has a vector yet (${recorded.model} has not embedded any)`
    }
    let vector: Float32Array | null
    try {
      vector = await options.embed(`${recorded.queryPrefix}${query}`, recorded.model)
    } catch (err) {
      return `the embedding model ${recorded.model} failed: ${(err as Error).message}`
    }
    if (vector === null) return `the embedding model ${recorded.model} cannot be reached`
    if (vector.length !== recorded.dim) {
      return `the embedding model ${recorded.model} answered with ${vector.length} dimensions, the index holds ${recorded.dim}`
    }
    return vector
  }

  function withFilter<Q extends { where(predicate: string): Q }>(query: Q, where?: string): Q {
    return where === undefined ? query : query.where(where)
  }

  /**
   * Whether the vector index holds every row. Its distances are then all of one kind, the
   * squared L2 distance of the normalised vectors (2 − 2·cos), and a hit's similarity is read
   * from them; rows written since it was built come back with the cosine distance (1 − cos) in
   * the same result, so until they are folded in the similarities come from the stored vectors.
   */
  async function wholeIndex(t: OpenTable): Promise<boolean> {
    if (t.indexed === undefined) {
      const index = (await t.table.listIndices()).find((i) =>
        i.columns.includes(ChunkColumn.vector),
      )
      const stats = index === undefined ? undefined : await t.table.indexStats(index.name)
      t.indexed = stats?.numUnindexedRows === 0
    }
    return t.indexed
  }

  async function vectorLeg(
    t: Table,
    vector: Float32Array,
    where: string | undefined,
    n: number,
    withVectors: boolean,
  ) {
    const query = t
      .query()
      .nearestTo(vector)
      .column(ChunkColumn.vector)
      .distanceType('cosine')
      .ef(vectorQueryEf(n))
      .withRowId()
      .select(
        withVectors
          ? [...HIT_COLUMNS, ChunkColumn.vector, '_distance']
          : [...HIT_COLUMNS, '_distance'],
      )
      .limit(n)
    return withFilter(query, where).toArrow()
  }

  /**
   * The cosine similarity of each row the vector leg found: from the index's distances when it
   * holds every row (`whole`), else from the stored vectors the leg read (see wholeIndex). The
   * leg's rows are then ranked by it.
   */
  function similaritiesOf(rows: ArrowTable, vector: Float32Array, whole: boolean): number[] {
    if (whole) return columnOf<number>(rows, '_distance').map((d) => similarityOf(1 - d / 2))
    const stored = columnOf<Vector<ArrowFloat32>>(rows, ChunkColumn.vector)
    return stored.map((v) => similarityOf(cosine(vector, v.toArray())))
  }

  /** Row positions of a leg's rows, most similar first. */
  const bySimilarity = (similarities: number[]) =>
    similarities
      .map((_, at) => at)
      .sort((a, b) => (similarities[b] as number) - (similarities[a] as number))

  /**
   * `withVectors`: the stored vectors come too, so that a hybrid hit only this leg found gets its
   * similarity (the grounded chat's relevance floor reads it).
   */
  async function keywordLeg(
    t: Table,
    text: string,
    where: string | undefined,
    n: number,
    withVectors: boolean,
  ) {
    // A match query: the words as words (no query syntax: quotes, AND, field:value and
    // parentheses are text to find, never an error).
    const query = t
      .query()
      .fullTextSearch(new MatchQuery(keywordQuery(text), ChunkColumn.text))
      .withRowId()
      .select(
        withVectors ? [...HIT_COLUMNS, ChunkColumn.vector, '_score'] : [...HIT_COLUMNS, '_score'],
      )
      .limit(n)
    return withFilter(query, where).toArrow()
  }

  /** Candidates best first; `more` when a leg was full (it may hold more). */
  async function candidates(
    open: OpenTable,
    mode: SearchMode,
    text: string,
    vector: Float32Array | null,
    where: string | undefined,
    n: number,
  ): Promise<{ ranked: Candidate[]; more: boolean }> {
    const t = open.table
    const whole = mode !== 'keyword' && (await wholeIndex(open))
    if (mode === 'vector') {
      const rows = await vectorLeg(t, vector as Float32Array, where, n, !whole)
      const similarities = similaritiesOf(rows, vector as Float32Array, whole)
      const leg = legOf(rows)
      const ranked = bySimilarity(similarities).map((at) => {
        const score = similarities[at] as number
        return { leg, at, score, similarity: score }
      })
      return { ranked, more: rows.numRows === n }
    }
    if (mode === 'keyword') {
      const rows = await keywordLeg(t, text, where, n, false)
      const leg = legOf(rows)
      const ranked = columnOf<number>(rows, '_score').map((score, at) => {
        return { leg, at, score, keyword_score: score }
      })
      return { ranked, more: rows.numRows === n }
    }
    const [near, words] = await Promise.all([
      vectorLeg(t, vector as Float32Array, where, n, !whole),
      keywordLeg(t, text, where, n, true),
    ])
    const similarities = similaritiesOf(near, vector as Float32Array, whole)
    const order = bySimilarity(similarities)
    const allIds = columnOf<bigint>(near, '_rowid')
    const nearIds = order.map((at) => allIds[at] as bigint)
    const nearDistances = order.map((at) => 1 - (similarities[at] as number))
    const wordIds = columnOf<bigint>(words, '_rowid')
    const wordScores = columnOf<number>(words, '_score')
    const fused = await reranker.rerankHybrid(
      text,
      rankBatch(nearIds, nearDistances, '_distance'),
      rankBatch(wordIds, wordScores, '_score'),
    )
    const byId = new Map<bigint, Candidate>()
    const nearLeg = legOf(near)
    const wordsLeg = legOf(words)
    allIds.forEach((id, at) => {
      byId.set(id, { leg: nearLeg, at, score: 0, similarity: similarities[at] as number })
    })
    wordIds.forEach((id, at) => {
      const seen = byId.get(id)
      const keyword_score = wordScores[at] as number
      if (seen === undefined) byId.set(id, { leg: wordsLeg, at, score: 0, keyword_score })
      else seen.keyword_score = keyword_score
    })
    const ids = fused.getChild('_rowid') as Vector
    const scores = fused.getChild('_relevance_score') as Vector
    const ranked: Candidate[] = []
    for (let i = 0; i < fused.numRows; i++) {
      const candidate = byId.get(BigInt(ids.get(i))) as Candidate
      candidate.score = scores.get(i) as number
      ranked.push(candidate)
    }
    return { ranked, more: near.numRows === n || words.numRows === n }
  }

  /**
   * The hits, built from the legs' own rows. A hybrid hit only the keyword leg found gets its
   * similarity from the stored vector that leg read (none when the chunk has no vector yet).
   */
  function hitsOf(hits: Candidate[], vector: Float32Array | null, query: string) {
    return hits.map((hit) => {
      if (hit.similarity === undefined && vector !== null) {
        const stored = cell(hit, ChunkColumn.vector) as Vector<ArrowFloat32> | null
        if (stored !== null) hit.similarity = similarityOf(cosine(vector, stored.toArray()))
      }
      return toHit(hit, query)
    })
  }

  async function run(request: SearchRequest): Promise<SearchResponse> {
    const asked = request.mode ?? 'hybrid'
    const k = checkCount('top_k', request.top_k, DEFAULT_TOP_K, MAX_TOP_K)
    const perPage = checkCount('per_page', request.per_page, defaultPerPage, MAX_TOP_K)
    const filters = request.filters ?? {}
    const where = filterSql(filters)
    const text = request.query.slice(0, MAX_QUERY_CHARS)
    if (matchesNothing(filters) || text.trim() === '') return { mode: asked, results: [] }
    const t = await current()
    if (t === null) return { mode: asked, results: [] }
    let mode = asked
    let fallback: string | undefined
    let vector: Float32Array | null = null
    if (asked !== 'keyword') {
      const got = await queryVector(t, text)
      if (typeof got === 'string') {
        mode = 'keyword'
        fallback = got
      } else {
        vector = got
      }
    }
    let n = Math.max(k * CANDIDATES_PER_HIT, MIN_CANDIDATES)
    let hits: Candidate[]
    for (;;) {
      const { ranked, more } = await candidates(t, mode, text, vector, where, n)
      hits = capPerPage(ranked, k, perPage)
      if (hits.length === k || !more || n >= MAX_CANDIDATES) break
      n *= 4
    }
    const results = hitsOf(hits, vector, text)
    return fallback === undefined ? { mode, results } : { mode, fallback, results }
  }

  return {
    async search(request) {
      try {
        return await run(request)
      } catch (err) {
        if (err instanceof SearchRequestError) throw err
        // The worker may have dropped and recreated the table (or changed its vector column,
        // or compacted away the files of the version being read) under the open handle: open
        // it again and try once more, then once more after a moment (a compaction commits).
        open = null
        try {
          return await run(request)
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 50))
          open = null
          return run(request)
        }
      }
    },
    async close() {
      open?.table.close()
      open = null
      db.close()
    },
  }
}

import {
  ftsIndex,
  ftsIndexStale,
  lancedbConnect,
  VECTOR_INDEX_KIND,
  VECTOR_INDEX_MAX_SEGMENTS,
  vectorIndex,
} from '@confluence-bot/index'
import {
  CHUNKS_TABLE,
  ChunkColumn,
  type ChunkRow,
  type EmbedPrefixes,
  rowChunkId,
  sqlString,
  sqlStringList,
} from '@confluence-bot/shared'
import { Index, type Table } from '@lancedb/lancedb'
import type { Field, Vector } from 'apache-arrow'
import type { Redis } from 'ioredis'
import { type Logger, pino } from 'pino'
import { withLock } from '../lib/lock.ts'
import {
  arrow,
  chunkSchema,
  type Embedding,
  embeddingMetadata,
  rowsToArrow,
  schemaEmbedding,
  vectorField,
  type WriteRow,
} from './arrow.ts'

// The LanceDB side of ingestion: one `chunks` table, written by one process at a time (a Redis
// lock: LanceDB commits are optimistic and concurrent writers conflict), read by anyone without
// the lock. The table never mixes embedding models: its schema metadata records the model and
// dimension of the vector column, and a row's vector is either from that model or null (its
// embed_model says which, so no read has to touch the vectors to know). The metadata also
// records the document prefix every vector was made with and the query prefix that matches
// them: a vector made with another document prefix is never stored, and a new document prefix
// resets the vectors just as a new model does.

export type { Embedding } from './arrow.ts'

export const DEFAULT_CHUNKS_LOCK_KEY = 'cnfl:lock:lancedb:chunks'

export type ChunkStoreOptions = {
  /** A directory, or s3://bucket/prefix. */
  uri: string
  /** Commands only: takes the writer lock. */
  redis: Redis
  log?: Logger
  /** Rows with vectors from which maintain() builds the vector index (IVF needs enough rows). */
  vectorIndexMinRows: number
  lockKey?: string
  /** How long the writer lock outlives a holder that died. */
  lockTtlMs?: number
  /** Versions younger than this survive compaction (default 10 minutes, for readers). */
  versionGraceMs?: number
}

/** What the index holds for one page. */
export type IndexedPage = {
  /** The page version its chunks were cut from ('' if its chunks disagree: treat as changed). */
  version: string
  /** Every chunk of the page has a vector from the recorded model. */
  vectors: boolean
}

/** A stored chunk without its vector. */
export type StoredChunk = Omit<ChunkRow, 'vector'>

/**
 * What a page's chunks were stamped with besides their text: whatever a chunk's metadata
 * depends on. A page whose chunks disagree on any of it has version '' (treat as changed).
 */
export type PageStamp = IndexedPage & {
  title: string
  /** Space key. */
  space: string
  /** The page's URL (its chunks' section URLs without the anchor). */
  url: string
  labels: string[]
  /** The breadcrumb above the page's headings: space name › ancestors › title. */
  trail: string
}

/** New page metadata for one stored chunk; `vector` (with a model) replaces its vector too. */
export type Restamp = {
  chunk_id: string
  breadcrumb: string
  labels: string[]
  vector?: ArrayLike<number> | null
}

export type VectorItem = { chunk_id: string; vector: ArrayLike<number> }

export type ReplaceResult = {
  inserted: number
  updated: number
  deleted: number
  /** The guard refused the write (the source is gone): nothing was written. */
  refused?: true
}

/**
 * Asked under the writer lock, right before a write commits: false refuses the write. A purge
 * takes the same lock, so a write that saw its source registered commits before the purge's
 * delete, and one that runs after the source was removed writes nothing.
 */
export type WriteGuard = () => Promise<boolean>

export type MaintainReport = {
  rows: number
  /** Names of the table's indices after maintenance. */
  indices: string[]
  /** optimize() merged fragments. */
  compacted: boolean
}

/**
 * - 'deferred': no table yet; it is created with this model's vector column.
 * - 'unchanged': the table already records this model, dimension and both prefixes.
 * - 'added': the table had no vector column; an all-null one now records the model.
 * - 'replaced': vectors of another model or document prefix were dropped; an all-null column
 *   records the new setup.
 * - 'relabelled': only the query prefix changed: the metadata records the new one, vectors kept.
 */
export type UseEmbeddingResult = 'deferred' | 'unchanged' | 'added' | 'replaced' | 'relabelled'

/** No prefix on either side: how vectors were made before prefixes existed. */
const NO_PREFIXES: EmbedPrefixes = { query: '', document: '' }

export type ChunkStore = {
  /**
   * The model, dimension and prefixes the table records (before the table exists: what it will
   * record).
   */
  embedding(): Promise<Embedding | null>
  /** Makes the table record this setup (prefixes: none by default); see UseEmbeddingResult. */
  useEmbedding(model: string, dim: number, prefixes?: EmbedPrefixes): Promise<UseEmbeddingResult>
  /** page_id → what the index holds, for one source (reads no vectors). */
  pageVersions(sourceId: string): Promise<Map<string, IndexedPage>>
  /**
   * Makes the chunks of `pageIds` (and of any page a row belongs to) exactly `rows`, in one
   * commit: chunks a page no longer has are deleted, a listed page without rows is removed.
   * Vectors not from the recorded model and document prefix are stored as null. Idempotent.
   */
  replacePages(
    sourceId: string,
    pageIds: readonly string[],
    rows: ChunkRow[],
    /** Checked under the lock before anything is written; false refuses the write. */
    guard?: WriteGuard,
    /** What the rows' vectors were made with (and what a query pairs with): none by default. */
    prefixes?: EmbedPrefixes,
  ): Promise<ReplaceResult>
  /** Rows deleted. */
  deletePages(sourceId: string, pageIds: readonly string[]): Promise<number>
  /** Rows deleted. */
  deleteSource(sourceId: string): Promise<number>
  /** page_id → what its chunks were stamped with, for one source (reads no vectors or text). */
  pageStamps(sourceId: string): Promise<Map<string, PageStamp>>
  /** The chunks of these pages of one source, without vectors. */
  pageChunks(sourceId: string, pageIds: readonly string[]): Promise<StoredChunk[]>
  /**
   * Rewrites breadcrumb and labels of stored chunks in one commit, text and vectors kept. With
   * `model` and `documentPrefix` (the recorded ones, else it throws), each item's `vector`
   * replaces the chunk's (null: none until the fill). Chunks gone meanwhile are skipped;
   * returns how many were rewritten.
   */
  restampChunks(items: readonly Restamp[], model?: string, documentPrefix?: string): Promise<number>
  /** Chunks of every source that have no vector yet. */
  countWithoutVectors(): Promise<number>
  /** `filter` is a LanceDB SQL predicate; build literals with sqlString. */
  countRows(filter?: string): Promise<number>
  /** Up to `limit` chunks that have no vector yet (of one source, or of any). */
  rowsWithoutVectors(
    sourceId: string | undefined,
    limit: number,
    /** Sources left out (every source but these, when `sourceId` is undefined). */
    except?: readonly string[],
  ): Promise<StoredChunk[]>
  /**
   * Sets the vectors of chunks that still have none; returns how many it set. Throws when
   * `model` or `documentPrefix` (none by default) is not the recorded one (the setup changed
   * since these vectors were made).
   */
  setVectors(model: string, items: readonly VectorItem[], documentPrefix?: string): Promise<number>
  /**
   * Rows the full-text index does not cover yet (written since maintain() last folded them in;
   * the vector index falls behind by the same writes), or null when the table has no full-text
   * index yet (a first sync: maintain() builds every index once, at its end). Reads index
   * metadata only, no rows.
   */
  unindexedRows(): Promise<number | null>
  /** Builds missing indices, then compacts, updates indices and removes old versions. */
  maintain(options?: { force?: boolean }): Promise<MaintainReport>
  close(): Promise<void>
}

// Versions younger than this survive compaction: a reader (the api, another worker) may still be
// scanning one, and removing its files under it fails the read.
const READER_GRACE_MS = 10 * 60 * 1000

const STORED_COLUMNS = Object.values(ChunkColumn).filter((c) => c !== ChunkColumn.vector)
const HAS_VECTOR = `${ChunkColumn.embedModel} != ''`
const NO_VECTOR = `${ChunkColumn.embedModel} = ''`
const bySource = (sourceId: string) => `${ChunkColumn.sourceId} = ${sqlString(sourceId)}`

/** Vectors made with another document prefix than the table's: the prefix changed meanwhile. */
const prefixMismatch = (recorded: Embedding) =>
  new Error(
    `vectors cannot be stored: the table's vectors are made with the document prefix ${JSON.stringify(recorded.documentPrefix)}`,
  )

/** Chunks matching `where` (up to `limit`), without their vectors. */
async function storedChunks(t: Table, where: string, limit?: number): Promise<StoredChunk[]> {
  const query = t.query().where(where).select(STORED_COLUMNS)
  const found = await (limit === undefined ? query : query.limit(limit)).toArray()
  return found.map((row) => {
    const chunk = Object.fromEntries(STORED_COLUMNS.map((c) => [c, row[c]])) as StoredChunk
    chunk.labels = [...row[ChunkColumn.labels]]
    return chunk
  })
}

export async function openChunkStore(options: ChunkStoreOptions): Promise<ChunkStore> {
  const { redis, vectorIndexMinRows } = options
  const log = options.log ?? pino({ level: 'silent' })
  const lockKey = options.lockKey ?? DEFAULT_CHUNKS_LOCK_KEY
  const db = await lancedbConnect(options.uri)
  let table: Table | null = null
  // useEmbedding() before the table exists: applied when this store first writes.
  let deferred: Embedding | null = null

  const locked = <T>(fn: (signal: AbortSignal) => Promise<T>) =>
    withLock(redis, lockKey, fn, { ttlMs: options.lockTtlMs })

  async function openTable(): Promise<Table | null> {
    if (table !== null) return table
    if (!(await db.tableNames()).includes(CHUNKS_TABLE)) return null
    table = await db.openTable(CHUNKS_TABLE)
    return table
  }

  async function applyEmbedding(
    t: Table,
    want: Embedding,
    signal: AbortSignal,
  ): Promise<UseEmbeddingResult> {
    const schema = await t.schema()
    const current = schemaEmbedding(schema)
    const metadata = new Map([...schema.metadata, ...embeddingMetadata(want)])
    const same =
      current?.model === want.model &&
      current.dim === want.dim &&
      current.documentPrefix === want.documentPrefix
    if (same) {
      if (current.queryPrefix === want.queryPrefix) return 'unchanged'
      // Vectors made the same way: only what a query must be given changes. The vector field's
      // copy first, then the table's (what readers go by; a schema without fields merges its
      // metadata keys into the table's): stopped between the two, the next call does both.
      await t.updateFieldMetadata([
        { path: ChunkColumn.vector, metadata: Object.fromEntries(embeddingMetadata(want)) },
      ])
      await t.addColumns(new arrow.Schema([], metadata))
      log.info({ from: current, to: want }, 'embedding query prefix changed: vectors kept')
      return 'relabelled'
    }
    const hasColumn = schema.fields.some((f) => f.name === ChunkColumn.vector)
    // Rows stop claiming a vector first: should this stop half-way, no row says it has a vector
    // of either model, and the next useEmbedding() finishes the change.
    if ((await t.countRows(HAS_VECTOR)) > 0) {
      await t.update({ values: { [ChunkColumn.embedModel]: '' }, where: HAS_VECTOR })
    }
    signal.throwIfAborted()
    // Dropping the column drops its index with it.
    if (hasColumn) await t.dropColumns([ChunkColumn.vector])
    signal.throwIfAborted()
    // A one-field schema adds the column (all null) and replaces the table's metadata keys.
    await t.addColumns(new arrow.Schema([vectorField(want)], metadata))
    log.info(
      { from: current, to: want },
      hasColumn
        ? 'embedding model or document prefix changed: vectors reset'
        : 'vector column added',
    )
    return hasColumn ? 'replaced' : 'added'
  }

  /**
   * The table to write to, created if need be: with the model this process's sync chose, else
   * with the one the rows' vectors come from and their prefixes (the sync that chose them ran in
   * another worker). Applies a deferred useEmbedding(). Under the lock.
   */
  async function writableTable(
    signal: AbortSignal,
    rows: readonly ChunkRow[],
    prefixes: EmbedPrefixes,
  ): Promise<Table> {
    const existing = await openTable()
    const want = deferred
    deferred = null
    if (existing === null) {
      const made = rows.find((row) => row.vector !== null)
      const embedding =
        want ??
        (made === undefined
          ? null
          : {
              model: made.embed_model,
              dim: made.vector?.length,
              documentPrefix: prefixes.document,
              queryPrefix: prefixes.query,
            })
      table = await db.createEmptyTable(CHUNKS_TABLE, chunkSchema(embedding as Embedding | null), {
        mode: 'create',
        existOk: true,
      })
      return table
    }
    if (want !== null) await applyEmbedding(existing, want, signal)
    return existing
  }

  /** The pages the rows belong to and their chunk ids; throws on a row that does not fit. */
  function validateRows(sourceId: string, rows: readonly ChunkRow[]) {
    const pages = new Set<string>()
    const ids = new Set<string>()
    for (const row of rows) {
      if (row.source_id !== sourceId) {
        throw new Error(`chunk ${row.chunk_id} belongs to source ${row.source_id}, not ${sourceId}`)
      }
      if (row.chunk_id !== rowChunkId(row.source_id, row.page_id, row.chunk_pos)) {
        throw new Error(`chunk id ${row.chunk_id} is not rowChunkId(source_id, page_id, chunk_pos)`)
      }
      if (ids.has(row.chunk_id)) throw new Error(`chunk ${row.chunk_id} appears twice`)
      ids.add(row.chunk_id)
      pages.add(row.page_id)
    }
    return { pages, ids }
  }

  return {
    async embedding() {
      const t = await openTable()
      if (t === null) return deferred
      return schemaEmbedding(await t.schema())
    },

    async useEmbedding(model, dim, prefixes = NO_PREFIXES) {
      if (model === '' || !Number.isInteger(dim) || dim <= 0) {
        throw new TypeError(`invalid embedding model "${model}" of dimension ${dim}`)
      }
      const want = { model, dim, documentPrefix: prefixes.document, queryPrefix: prefixes.query }
      return locked(async (signal) => {
        const t = await openTable()
        if (t === null) {
          deferred = want
          return 'deferred'
        }
        deferred = null
        return applyEmbedding(t, want, signal)
      })
    },

    async pageVersions(sourceId) {
      const pages = new Map<string, IndexedPage>()
      const t = await openTable()
      if (t === null) return pages
      const recorded = schemaEmbedding(await t.schema())
      const found = await t
        .query()
        .where(bySource(sourceId))
        .select([ChunkColumn.pageId, ChunkColumn.version, ChunkColumn.embedModel])
        .toArrow()
      for (const batch of found.batches) {
        const column = (name: string) => (batch.getChild(name) as Vector).toArray() as string[]
        const versions = column(ChunkColumn.version)
        const models = column(ChunkColumn.embedModel)
        column(ChunkColumn.pageId).forEach((id, i) => {
          const version = versions[i] as string
          const vectors = recorded !== null && models[i] === recorded.model
          const page = pages.get(id)
          if (page === undefined) {
            pages.set(id, { version, vectors })
            return
          }
          if (page.version !== version) page.version = ''
          page.vectors = page.vectors && vectors
        })
      }
      return pages
    },

    async replacePages(sourceId, pageIds, rows, guard, prefixes = NO_PREFIXES) {
      const { pages, ids } = validateRows(sourceId, rows)
      for (const id of pageIds) pages.add(id)
      if (pages.size === 0) return { inserted: 0, updated: 0, deleted: 0 }
      const scope = `${bySource(sourceId)} AND ${ChunkColumn.pageId} IN ${sqlStringList(pages)}`
      return locked(async (signal) => {
        if (guard !== undefined && !(await guard())) {
          return { inserted: 0, updated: 0, deleted: 0, refused: true }
        }
        if (rows.length === 0) {
          const t = await openTable()
          const deleted = t === null ? 0 : (await t.delete(scope)).numDeletedRows
          return { inserted: 0, updated: 0, deleted }
        }
        const t = await writableTable(signal, rows, prefixes)
        const schema = await t.schema()
        const recorded = schemaEmbedding(schema)
        let dropped = 0
        const write = rows.map((row): WriteRow => {
          if (row.vector === null) return { ...row, embed_model: '' }
          const keep =
            recorded !== null &&
            row.embed_model === recorded.model &&
            row.vector.length === recorded.dim &&
            prefixes.document === recorded.documentPrefix
          if (keep) return row
          dropped++
          return { ...row, vector: null, embed_model: '' }
        })
        if (dropped > 0) {
          log.warn(
            { dropped, recorded },
            'vectors not from the recorded embedding model and document prefix were stored as null',
          )
        }
        // Deleting through the merge makes it scan the whole table (about 1 s per 1000-row
        // batch at 100k rows, against under 0.1 s for a plain upsert), so the merge is asked to
        // delete only when one of these pages has chunks the new rows do not replace.
        const present = await t.query().where(scope).select([ChunkColumn.chunkId]).toArrow()
        const data = rowsToArrow(schema, write)
        signal.throwIfAborted()
        // None of these pages has a row yet (a first sync): a plain append, which costs no join
        // against the whole table. Under the writer lock no one can add them meanwhile, and a
        // retry finds them present and merges.
        if (present.numRows === 0) {
          await t.add(data)
          return { inserted: write.length, updated: 0, deleted: 0 }
        }
        const stale = present.batches.some((batch) =>
          (batch.getChild(ChunkColumn.chunkId) as Vector)
            .toArray()
            .some((id: string) => !ids.has(id)),
        )
        const upsert = t
          .mergeInsert(ChunkColumn.chunkId)
          .whenMatchedUpdateAll()
          .whenNotMatchedInsertAll()
        const merge = stale ? upsert.whenNotMatchedBySourceDelete({ where: scope }) : upsert
        const result = await merge.execute(data)
        return {
          inserted: result.numInsertedRows,
          updated: result.numUpdatedRows,
          deleted: result.numDeletedRows,
        }
      })
    },

    async deletePages(sourceId, pageIds) {
      if (pageIds.length === 0) return 0
      return locked(async () => {
        const t = await openTable()
        if (t === null) return 0
        const where = `${bySource(sourceId)} AND ${ChunkColumn.pageId} IN ${sqlStringList(pageIds)}`
        return (await t.delete(where)).numDeletedRows
      })
    },

    async deleteSource(sourceId) {
      return locked(async () => {
        const t = await openTable()
        if (t === null) return 0
        return (await t.delete(bySource(sourceId))).numDeletedRows
      })
    },

    async pageStamps(sourceId) {
      const pages = new Map<string, PageStamp>()
      const t = await openTable()
      if (t === null) return pages
      const recorded = schemaEmbedding(await t.schema())
      const columns = [
        ChunkColumn.pageId,
        ChunkColumn.version,
        ChunkColumn.embedModel,
        ChunkColumn.title,
        ChunkColumn.space,
        ChunkColumn.url,
        ChunkColumn.labels,
        ChunkColumn.breadcrumb,
        ChunkColumn.headingPath,
      ]
      const found = await t.query().where(bySource(sourceId)).select(columns).toArrow()
      for (const batch of found.batches) {
        const [ids, versions, models, titles, spaces, urls, labels, crumbs, headings] = columns.map(
          (name) => batch.getChild(name) as Vector,
        ) as [Vector, Vector, Vector, Vector, Vector, Vector, Vector, Vector, Vector]
        for (let i = 0; i < batch.numRows; i++) {
          const id = ids.get(i) as string
          const heading = headings.get(i) as string
          const crumb = crumbs.get(i) as string
          const suffix = heading === '' ? '' : ` › ${heading}`
          const stamp: PageStamp = {
            version: versions.get(i) as string,
            vectors: recorded !== null && models.get(i) === recorded.model,
            title: titles.get(i) as string,
            space: spaces.get(i) as string,
            url: (urls.get(i) as string).split('#')[0] as string,
            labels: [...(labels.get(i) as Iterable<string>)],
            // A breadcrumb that does not end in its heading path matches no trail.
            trail: crumb.endsWith(suffix) ? crumb.slice(0, crumb.length - suffix.length) : '',
          }
          const page = pages.get(id)
          if (page === undefined) {
            pages.set(id, stamp)
            continue
          }
          const same =
            page.version === stamp.version &&
            page.title === stamp.title &&
            page.space === stamp.space &&
            page.url === stamp.url &&
            page.trail === stamp.trail &&
            page.labels.join('\n') === stamp.labels.join('\n')
          if (!same) page.version = ''
          page.vectors = page.vectors && stamp.vectors
        }
      }
      return pages
    },

    async pageChunks(sourceId, pageIds) {
      const t = await openTable()
      if (t === null || pageIds.length === 0) return []
      const where = `${bySource(sourceId)} AND ${ChunkColumn.pageId} IN ${sqlStringList(pageIds)}`
      return storedChunks(t, where)
    },

    async restampChunks(items, model, documentPrefix = '') {
      if (items.length === 0) return 0
      return locked(async () => {
        // The chunks were read from it: the table exists.
        const t = (await openTable()) as Table
        const schema = await t.schema()
        const names: string[] = [ChunkColumn.chunkId, ChunkColumn.breadcrumb, ChunkColumn.labels]
        if (model !== undefined) {
          const recorded = schemaEmbedding(schema)
          if (recorded?.model !== model) {
            throw new Error(
              `vectors of ${model} cannot be stored: the table records ${recorded?.model ?? 'no embedding model'}`,
            )
          }
          if (recorded.documentPrefix !== documentPrefix) throw prefixMismatch(recorded)
          names.push(ChunkColumn.embedModel, ChunkColumn.vector)
        }
        const fields = names.map((name) => schema.fields.find((f) => f.name === name) as Field)
        const data = rowsToArrow(
          new arrow.Schema(fields),
          items.map((item) => {
            const vector = item.vector ?? null
            return { ...item, vector, embed_model: vector === null ? '' : (model as string) }
          }),
        )
        const result = await t.mergeInsert(ChunkColumn.chunkId).whenMatchedUpdateAll().execute(data)
        return result.numUpdatedRows
      })
    },

    async countWithoutVectors() {
      const t = await openTable()
      return t === null ? 0 : t.countRows(NO_VECTOR)
    },

    async countRows(filter) {
      const t = await openTable()
      if (t === null) return 0
      return t.countRows(filter)
    },

    async rowsWithoutVectors(sourceId, limit, except = []) {
      const t = await openTable()
      if (t === null) return []
      const scope = sourceId === undefined ? '' : ` AND ${bySource(sourceId)}`
      const others =
        except.length === 0 ? '' : ` AND ${ChunkColumn.sourceId} NOT IN ${sqlStringList(except)}`
      return storedChunks(t, `${NO_VECTOR}${scope}${others}`, limit)
    },

    async setVectors(model, items, documentPrefix = '') {
      if (items.length === 0) return 0
      return locked(async () => {
        const t = await openTable()
        if (t === null) throw new Error(`vectors of ${model} cannot be stored: no chunk table yet`)
        const schema = await t.schema()
        const recorded = schemaEmbedding(schema)
        if (recorded?.model !== model) {
          throw new Error(
            `vectors of ${model} cannot be stored: the table records ${recorded?.model ?? 'no embedding model'}`,
          )
        }
        if (recorded.documentPrefix !== documentPrefix) throw prefixMismatch(recorded)
        // Last item wins for a repeated chunk id (a merge must not match a row twice).
        const vectors = new Map(items.map((item) => [item.chunk_id, item.vector]))
        for (const [id, vector] of vectors) {
          if (vector.length !== recorded.dim) {
            throw new Error(`vector of ${id} has ${vector.length} dimensions, not ${recorded.dim}`)
          }
        }
        // One merge on chunk_id with only the columns that change: one commit for the batch, no
        // read-back of the rows (update() would be a commit per row, each with its own vector).
        // Only rows still without a vector take one: a row rewritten meanwhile with a fresh
        // vector keeps it.
        const fields = [ChunkColumn.chunkId, ChunkColumn.embedModel, ChunkColumn.vector].map(
          (name) => schema.fields.find((f) => f.name === name) as Field,
        )
        const data = rowsToArrow(
          new arrow.Schema(fields),
          [...vectors].map(([chunk_id, vector]) => ({ chunk_id, vector, embed_model: model })),
        )
        const result = await t
          .mergeInsert(ChunkColumn.chunkId)
          .whenMatchedUpdateAll({ where: `target.${NO_VECTOR}` })
          .execute(data)
        return result.numUpdatedRows
      })
    },

    async unindexedRows() {
      const t = await openTable()
      if (t === null) return null
      const text = (await t.listIndices()).find((i) => i.columns.includes(ChunkColumn.text))
      const stats = text === undefined ? undefined : await t.indexStats(text.name)
      return stats?.numUnindexedRows ?? null
    },

    async maintain({ force = false } = {}) {
      return locked(async (signal) => {
        const t = await openTable()
        if (t === null) return { rows: 0, indices: [], compacted: false }
        const rows = await t.countRows()
        // Versions older than the grace are removed; counted from each optimize() call.
        const grace = options.versionGraceMs ?? READER_GRACE_MS
        const cleanup = () => ({ cleanupOlderThan: new Date(Date.now() - grace) })
        let compacted = false
        if (rows > 0) {
          const indexed = new Set((await t.listIndices()).flatMap((i) => i.columns))
          const builds: Array<{ column: string; kind: string; config: () => Index }> = []
          const ensure = (column: string, kind: string, config: () => Index) => {
            if (force || !indexed.has(column)) builds.push({ column, kind, config })
          }
          // The tokenizer search measured (fts.ts); an index built with another is rebuilt.
          if (await ftsIndexStale(t)) indexed.delete(ChunkColumn.text)
          ensure(ChunkColumn.text, 'fts', () => ftsIndex())
          // Filters by source (sync, deletes) and by space (search) read a bitmap instead of
          // scanning the column: about half the time of a 1000-row merge at 100k rows.
          ensure(ChunkColumn.sourceId, 'bitmap', () => Index.bitmap())
          ensure(ChunkColumn.space, 'bitmap', () => Index.bitmap())
          const recorded = schemaEmbedding(await t.schema())
          const vectors = recorded === null ? 0 : await t.countRows(HAS_VECTOR)
          if (recorded !== null && vectors >= vectorIndexMinRows) {
            ensure(ChunkColumn.vector, VECTOR_INDEX_KIND, () => vectorIndex(vectors))
          }
          if (builds.length > 0) {
            // Compaction first: compacting rewrites every row address an index holds, so an
            // index built over a first sync's many small appends and compacted afterwards is
            // paid for twice (at 100k rows the remap took as long as the vector index build,
            // 231 s against 235 s, and +560 MB). Built after it, each index is written once,
            // over the table's final files.
            const before = await t.optimize(cleanup())
            compacted = before.compaction.fragmentsRemoved > 0
            signal.throwIfAborted()
          }
          for (const { column, kind, config } of builds) {
            await t.createIndex(column, { config: config(), replace: true })
            log.info({ column, kind }, 'index built')
            signal.throwIfAborted()
          }
        }
        // Compaction, index update (new rows folded in) and removal of every older version.
        let stats = await t.optimize(cleanup())
        const listed = await t.listIndices()
        const vectorIdx = listed.find((i) => i.columns.includes(ChunkColumn.vector))
        // A listed index has statistics, and LanceDB counts the segments of a vector index.
        const segments =
          vectorIdx === undefined
            ? 0
            : ((await t.indexStats(vectorIdx.name)) as { numIndices: number }).numIndices
        if (segments > VECTOR_INDEX_MAX_SEGMENTS) {
          // The folds of past syncs, each a segment every query searches: one index again.
          signal.throwIfAborted()
          const vectors = await t.countRows(HAS_VECTOR)
          await t.createIndex(ChunkColumn.vector, { config: vectorIndex(vectors), replace: true })
          log.info(
            { column: ChunkColumn.vector, kind: VECTOR_INDEX_KIND, segments },
            'index rebuilt',
          )
          stats = await t.optimize(cleanup())
        }
        const indices = listed.map((i) => i.name).sort()
        return { rows, indices, compacted: compacted || stats.compaction.fragmentsRemoved > 0 }
      })
    },

    async close() {
      table?.close()
      db.close()
    },
  }
}

import { setImmediate as yieldToEvents } from 'node:timers/promises'
import {
  addToRun,
  getSource,
  JobName,
  maintainJobOptions,
  type PageError,
  type PagesJobData,
  readRun,
} from '@confluence-bot/shared'
import { Job } from 'bullmq'
import { asJobError } from '../confluence/errors.ts'
import type { PageBody, PageRef } from '../confluence/types.ts'
import {
  type Catalog,
  type Lookups,
  loadCatalog,
  resolversOf,
  saveLookups,
} from '../ingest/catalog.ts'
import type { Ingest } from '../ingest/context.ts'
import { jobPrefixes } from '../ingest/embedding.ts'
import { documentInput, pageRows } from '../ingest/rows.ts'
import { chunksIndexed, pagesIndexed } from '../metrics.ts'
import { writeError } from '../store/storage.ts'
import type { ProcessorDeps } from '../worker.ts'

// A batch of changed pages of one sync: fetch their bodies in bulk, then convert and chunk each
// page, and embed and write the chunks in sub-batches: a sub-batch is written (one merge insert,
// which also drops its pages' old chunks) once the bodies converted into it reach
// SUB_BATCH_BYTES or its chunks SUB_BATCH_ROWS, so the memory a batch holds is bounded by bytes
// and rows, not only by its page count (a few pages of several MB each would otherwise hold all
// their chunks, texts, vectors and Arrow copies at once). A page is never split: its chunks are
// replaced in one commit. A page that fails is recorded and skipped; its old rows stay until a
// sync can read it again. Retrying the whole batch is safe: the write is an upsert keyed by chunk
// id, and the run's counters take each batch once.
//
// A source deleted while its batch runs: each write checks, under the writer lock, that the
// source is still registered, and the batch stops at the first refusal, writing nothing more
// and counting nothing (its purge removes what earlier sub-batches wrote).

/** A page of a batch: the listing entry and its ancestors' titles (the shared BatchPageSchema). */
export type BatchPage = PageRef & { ancestors: string[] }

/** Storage bytes converted into one sub-batch before it is embedded and written. */
export const SUB_BATCH_BYTES = 4 * 1024 * 1024
/** Chunks in one sub-batch before it is embedded and written (about one LanceDB merge's worth). */
export const SUB_BATCH_ROWS = 2_000

const SKIPPED = { skipped: 'the source was deleted' } as const
const REFUSED = { skipped: 'the source was deleted while the batch ran: nothing more written' }

type Row = Parameters<Ingest['store']['replacePages']>[2][number]

export function createPagesProcessor(ingest: Ingest) {
  // The catalog is written once per crawl, before its batches go out, so the batches of one
  // crawl share it: read once per process and crawl, not once per batch (it holds every page of
  // the source). A crawl is named by its batches' ids without the batch number (a sync job run
  // again crawls again under the same run id). Batches starting together may each read it; a
  // failed read is not kept.
  let catalog: { crawl: string; fields: Catalog } | undefined
  const catalogOf = async (job: Job, data: PagesJobData) => {
    const crawl = (job.id as string).slice(0, (job.id as string).lastIndexOf('-'))
    if (catalog?.crawl !== crawl) {
      catalog = { crawl, fields: await loadCatalog(ingest.redis, data.source_id) }
    }
    return catalog.fields
  }

  return async function pages(job: Job, { log }: ProcessorDeps) {
    const data = job.data as PagesJobData
    const spec = await getSource(ingest.redis, data.source_id)
    if (spec === undefined) return SKIPPED
    const registered = async () => (await getSource(ingest.redis, spec.id)) !== undefined

    // Stage timings go into the job's result: the dashboard shows them, the bench reads them.
    const ms = { fetch: 0, convert: 0, embed: 0, write: 0 }
    let mark = performance.now()
    const lap = (stage: keyof typeof ms) => {
      const now = performance.now()
      ms[stage] += Math.round(now - mark)
      mark = now
    }
    const source = await ingest.openSource(spec)
    let bodies: Array<PageBody | { id: string; message: string } | undefined>
    try {
      bodies = await source.fetchBodies(data.pages)
    } catch (err) {
      throw asJobError(err)
    } finally {
      await source.close()
    }

    lap('fetch')
    const fields = await catalogOf(job, data)
    const byId = new Map(data.pages.map((p) => [p.id, p]))
    const errors: PageError[] = []
    const written: string[] = []
    const embedded: string[] = []
    let chunks = 0
    let writes = 0
    let embedding = data.embed
    // What the sync chose: each chunk is embedded with its document prefix, and the write checks
    // under the lock that the table still records it (a first write records both prefixes).
    const prefixes = jobPrefixes(data.embed)
    const input = documentInput(prefixes.document)

    // The pages converted since the last write, their rows and the storage bytes they came from.
    type Pending = { pages: string[]; rows: Row[]; bytes: number; lookups: Map<string, Lookups> }
    const nothing = (): Pending => ({ pages: [], rows: [], bytes: 0, lookups: new Map() })
    let pending = nothing()
    /** Embeds and writes the pending pages; false when the source is gone (nothing written). */
    const flush = async (): Promise<boolean> => {
      const { pages, rows, lookups } = pending
      pending = nothing()
      if (pages.length === 0) return true
      lap('convert')
      if (embedding !== null) {
        const vectors = await ingest.embedder.embed(rows.map(input), embedding.model)
        if (vectors === null) {
          log.warn(
            { model: embedding.model },
            'embedding model unreachable: pages stored without vectors, filled in on a later sync',
          )
          // The rest of the batch is stored without vectors too, without asking again.
          embedding = null
        } else {
          const model = embedding.model
          rows.forEach((row, i) => {
            row.vector = vectors[i] as Float32Array
            row.embed_model = model
          })
        }
      }
      lap('embed')
      const stored = await ingest.store
        .replacePages(spec.id, pages, rows, registered, prefixes)
        .catch((err: unknown) => {
          throw writeError(err, ingest.config.LANCEDB_URI)
        })
      if (stored.refused === true) return false
      // What each page read from the catalog, so a page it links to changing converts it again.
      await saveLookups(ingest.redis, spec.id, lookups)
      lap('write')
      writes++
      chunks += rows.length
      pagesIndexed.inc({ source: spec.id }, pages.length)
      chunksIndexed.inc({ source: spec.id }, rows.length)
      written.push(...pages)
      if (rows[0]?.vector !== null) embedded.push(...pages)
      return true
    }

    for (const [i, body] of bodies.entries()) {
      // The batch keeps no body it is done with: a large one is freed as soon as it is converted.
      bodies[i] = undefined
      // Between pages the other batches' replies (embeddings, writes, fetches) get their turn:
      // converting a whole batch in one go would hold them back for its whole length.
      await yieldToEvents()
      /* c8 ignore next: bodies are only read once, in order */
      if (body === undefined) continue
      if (!('body' in body)) {
        errors.push({ page_id: body.id, message: body.message })
        continue
      }
      try {
        const lookups: Lookups = {}
        const page = pageRows(body, {
          sourceId: spec.id,
          kind: spec.kind,
          baseUrl: spec.base_url,
          /* c8 ignore next: every listed space has a name; the key stands in otherwise */
          spaceName: data.space_names[body.spaceKey] ?? body.spaceKey,
          ancestors: (byId.get(body.id) as BatchPage).ancestors,
          resolvers: resolversOf(fields, lookups),
        })
        for (const row of page.rows) pending.rows.push({ ...row, vector: null, embed_model: '' })
        pending.pages.push(body.id)
        pending.lookups.set(body.id, lookups)
        pending.bytes += Buffer.byteLength(body.body)
      } catch (err) {
        errors.push({ page_id: body.id, message: `conversion failed: ${(err as Error).message}` })
      }
      const full = pending.bytes >= SUB_BATCH_BYTES || pending.rows.length >= SUB_BATCH_ROWS
      if (full && !(await flush())) return REFUSED
    }
    if (!(await flush())) return REFUSED
    lap('convert')
    if (writes > 0) await foldIfBehind(ingest)

    await addToRun(
      ingest.redis,
      data.run_id,
      job.id as string,
      { converted: written.length, failed: errors.length },
      errors,
      embedded,
    )
    await reportProgress(ingest, data.run_id)
    return {
      converted: written.length,
      embedded: embedded.length,
      failed: errors.length,
      chunks,
      writes,
      ms,
    }
  }
}

// Rows a sync writes are searched at once, but each one the indices do not cover yet is read by
// a flat scan in every query (about 0.1 ms a row per query at 100k chunks: 5,000 of them make a
// keyword query take half a second), while folding them in takes a maintain job a few seconds.
// So once an indexed table has INDEX_FOLD_ROWS such rows, the batch asks for the (one, shared)
// maintain job without waiting for the sync to finish. A table without a full-text index yet (a
// first sync) is left to the finish step, which builds every index once over the final files:
// building them during the sync would pay for each index several times over.

/** Queues the index fold once the indexed table has enough rows its indices do not cover. */
async function foldIfBehind(ingest: Ingest): Promise<void> {
  const behind = await ingest.store.unindexedRows()
  if (behind !== null && behind >= ingest.config.INDEX_FOLD_ROWS) {
    await ingest.queues.sync.add(JobName.maintain, {}, maintainJobOptions())
  }
}

/** Copies the run's counters onto the sync job, where the dashboard shows them. */
export async function reportProgress(ingest: Ingest, runId: string): Promise<void> {
  const parent = await Job.fromId(ingest.queues.sync, runId)
  /* c8 ignore next: the sync job was removed by hand */
  if (parent === undefined) return
  const { progress } = await readRun(ingest.redis, runId)
  await parent.updateProgress(progress)
}

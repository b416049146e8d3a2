import { setImmediate as yieldToEvents } from 'node:timers/promises'
import {
  addToRun,
  getSource,
  type PageError,
  type PagesJobData,
  readRun,
} from '@confluence-bot/shared'
import { Job } from 'bullmq'
import { asJobError } from '../confluence/errors.ts'
import type { PageBody, PageRef } from '../confluence/types.ts'
import { loadCatalog, type Resolvers } from '../ingest/catalog.ts'
import type { Ingest } from '../ingest/context.ts'
import { embedText, pageRows } from '../ingest/rows.ts'
import type { ProcessorDeps } from '../worker.ts'

// A batch of changed pages of one sync: fetch their bodies in bulk, convert and chunk each,
// embed every chunk in batched calls, and write the batch to LanceDB in one merge insert (which
// also drops each page's old chunks). A page that fails is recorded and skipped; its old rows
// stay until a sync can read it again. Retrying the whole batch is safe: the write is an upsert
// keyed by chunk id, and the run's counters take each batch once.

/** A page of a batch: the listing entry and its ancestors' titles (the shared BatchPageSchema). */
export type BatchPage = PageRef & { ancestors: string[] }

export function createPagesProcessor(ingest: Ingest) {
  // The catalog is written once per crawl, before its batches go out, so the batches of one
  // crawl share it: read once per process and crawl, not once per batch (it holds every page of
  // the source). A crawl is named by its batches' ids without the batch number (a sync job run
  // again crawls again under the same run id). Batches starting together may each read it; a
  // failed read is not kept.
  let catalog: { crawl: string; resolvers: Resolvers } | undefined
  const resolversOf = async (job: Job, data: PagesJobData) => {
    const crawl = (job.id as string).slice(0, (job.id as string).lastIndexOf('-'))
    if (catalog?.crawl !== crawl) {
      catalog = { crawl, resolvers: await loadCatalog(ingest.redis, data.source_id) }
    }
    return catalog.resolvers
  }

  return async function pages(job: Job, { log }: ProcessorDeps) {
    const data = job.data as PagesJobData
    const spec = await getSource(ingest.redis, data.source_id)
    if (spec === undefined) return { skipped: 'the source was deleted' }

    // Stage timings go into the job's result: the dashboard shows them, the bench reads them.
    const ms = { fetch: 0, convert: 0, embed: 0, write: 0 }
    let mark = performance.now()
    const lap = (stage: keyof typeof ms) => {
      const now = performance.now()
      ms[stage] = Math.round(now - mark)
      mark = now
    }
    const source = await ingest.openSource(spec)
    let bodies: Array<PageBody | { id: string; message: string }>
    try {
      bodies = await source.fetchBodies(data.pages)
    } catch (err) {
      throw asJobError(err)
    } finally {
      await source.close()
    }

    lap('fetch')
    const resolvers = await resolversOf(job, data)
    const byId = new Map(data.pages.map((p) => [p.id, p]))
    const errors: PageError[] = []
    const written: string[] = []
    const rows: Parameters<typeof ingest.store.replacePages>[2] = []
    for (const body of bodies) {
      // Between pages the other batches' replies (embeddings, writes, fetches) get their turn:
      // converting a whole batch in one go would hold them back for its whole length.
      await yieldToEvents()
      if (!('body' in body)) {
        errors.push({ page_id: body.id, message: body.message })
        continue
      }
      try {
        const page = pageRows(body, {
          sourceId: spec.id,
          kind: spec.kind,
          baseUrl: spec.base_url,
          /* c8 ignore next: every listed space has a name; the key stands in otherwise */
          spaceName: data.space_names[body.spaceKey] ?? body.spaceKey,
          ancestors: (byId.get(body.id) as BatchPage).ancestors,
          resolvers,
        })
        for (const row of page.rows) rows.push({ ...row, vector: null, embed_model: '' })
        written.push(body.id)
      } catch (err) {
        errors.push({ page_id: body.id, message: `conversion failed: ${(err as Error).message}` })
      }
    }

    lap('convert')
    let embedded = 0
    if (data.embed !== null && rows.length > 0) {
      const vectors = await ingest.embedder.embed(rows.map(embedText))
      if (vectors === null) {
        log.warn(
          { model: data.embed.model },
          'embedding model unreachable: pages stored without vectors, filled in on a later sync',
        )
      } else {
        rows.forEach((row, i) => {
          row.vector = vectors[i] as Float32Array
          row.embed_model = data.embed?.model as string
        })
        embedded = written.length
      }
    }
    lap('embed')
    await ingest.store.replacePages(spec.id, written, rows)
    lap('write')

    await addToRun(
      ingest.redis,
      data.run_id,
      job.id as string,
      { converted: written.length, embedded, failed: errors.length },
      errors,
    )
    await reportProgress(ingest, data.run_id)
    return {
      converted: written.length,
      embedded,
      failed: errors.length,
      chunks: rows.length,
      ms,
    }
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

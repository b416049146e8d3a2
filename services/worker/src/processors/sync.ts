import {
  addToRun,
  configuredEmbedSetup,
  defaultJobOptions,
  embeddingInForce,
  getSource,
  JobName,
  jobId,
  maintainJobOptions,
  type PagesJobData,
  RUN_TTL_S,
  readRun,
  refillJobOptions,
  runKeys,
  type SyncJobData,
  type SyncResult,
  sameEmbedModel,
  sameEmbedSetup,
  syncLockKey,
  updateSource,
} from '@confluence-bot/shared'
import { Job, UnrecoverableError, WaitingChildrenError } from 'bullmq'
import { asJobError } from '../confluence/errors.ts'
import { confirmGone } from '../confluence/gone.ts'
import type { PageRef } from '../confluence/types.ts'
import {
  catalogOf,
  dropLookups,
  listedPages,
  relinkedPages,
  saveCatalog,
} from '../ingest/catalog.ts'
import type { Ingest } from '../ingest/context.ts'
import { jobEmbedding, jobPrefixes } from '../ingest/embedding.ts'
import { documentInput } from '../ingest/rows.ts'
import type { Embedding } from '../store/chunks.ts'
import { isUnwritable } from '../store/storage.ts'
import type { ProcessorDeps } from '../worker.ts'
import { type BatchPage, reportProgress } from './pages.ts'
import { deleteRefusal, planSync, type RestampPage, splitRestamp } from './sync-plan.ts'

// One sync of a source, in two steps of one job (the step is kept in the job's data, so a
// worker that dies mid-way is replaced by one that carries on from the last finished step):
//
// 1. crawl: list every page in scope (ids and versions, no bodies), diff against the index,
//    remember the pages for link resolution, and fan the changed ones out as page batches
//    (child jobs with deterministic ids, spread over every worker). The sync then waits for
//    its children.
// 2. finish: delete the pages gone from Confluence (unless that would be most of the space:
//    a broken credential or permission change looks just like a deletion), fill in vectors that
//    are missing (the model was unreachable, or was changed), and maintain the table (indexes,
//    compaction).
//
// A finished sync can run again under the same job id (the dashboard's retry of a completed
// job): that is a new run, so it crawls again. The job's data goes back to the request when the
// sync completes, and a run whose finish step was already counted never trusts step data. Even
// step data that is stale or forged (the dashboard queues any valid data) cannot delete a page
// that the source's latest crawl listed: that page exists now.

/** The job's data carries the sync's own state between its steps (shared SyncJobDataSchema). */
type SyncState = SyncJobData

/** What was asked for: the job's data without the state its crawl added. */
const requestOf = ({ source_id, full, force }: SyncState): SyncState => ({
  source_id,
  ...(full === undefined ? {} : { full }),
  ...(force === undefined ? {} : { force }),
})

/**
 * The crawl of a run, a key next to its counters: its page batches' ids carry it, so the batches
 * of an earlier run of the same job (kept by removeOnComplete/removeOnFail) neither stand in for
 * this run's nor count among its failures.
 */
const crawlKey = (runId: string) => `${runKeys(runId).counters}:crawl`

/** The job id prefix of one crawl's page batches (`-<n>` follows). */
const batchPrefix = (runId: string, crawl: string) => `${jobId('pages', runId, crawl)}-`

const SYNC_LOCK_TTL_S = 24 * 3600

/** What a run reports for a space of its source that Confluence no longer shows. */
export const goneSpaceMessage = (key: string) =>
  `Space ${key} is gone: Confluence has no such space, or the source's user can no longer see it ` +
  '(Confluence answers both alike). The other spaces were synced; its pages leave the index ' +
  `like deleted pages (within SYNC_MAX_DELETE_SHARE, else on a sync with {"force":true}). If ` +
  `${key} was not removed, check the key (case-sensitive) and that user's permissions`

/** Pages restamped per read and write (a renamed root restamps its whole space). */
const RESTAMP_PAGES = 100

export function createSyncProcessor(ingest: Ingest) {
  async function claim(job: Job, sourceId: string): Promise<boolean> {
    const key = syncLockKey(sourceId)
    const id = job.id as string
    if ((await ingest.redis.set(key, id, 'EX', SYNC_LOCK_TTL_S, 'NX')) === 'OK') return true
    const holder = await ingest.redis.get(key)
    if (holder === id) return true
    // The holder may have ended without letting go (a crash between steps, a removed job).
    /* c8 ignore next: the claim lapsed between the two reads */
    const state = holder === null ? 'unknown' : await ingest.queues.sync.getJobState(holder)
    // A failed or finished holder is taken over; one that is running or about to is not.
    if (!['unknown', 'completed', 'failed'].includes(state)) return false
    await ingest.redis.set(key, id, 'EX', SYNC_LOCK_TTL_S)
    return true
  }

  // Only a finished sync lets go: a failed attempt keeps the claim for its retry, and a sync
  // that failed for good is taken over by the next one (claim above).
  async function release(sourceId: string, job: Job) {
    const key = syncLockKey(sourceId)
    if ((await ingest.redis.get(key)) === job.id) await ingest.redis.del(key)
  }

  async function chooseEmbedding(): Promise<Embedding | null> {
    const recorded = await ingest.store.embedding()
    // The table's setup (model and prefixes) while a live worker names it: a rolling update
    // switches once, at its end.
    const setup = await embeddingInForce(
      ingest.redis,
      recorded,
      configuredEmbedSetup(ingest.config),
    )
    // The table says how its vectors were made: the same setup (models compared as Ollama reads
    // names: `embed` is `embed:latest`), no probe call needed.
    if (recorded !== null && sameEmbedSetup(recorded, setup)) return recorded
    // New prefixes for the same model keep the table's spelling of its name.
    const model =
      recorded !== null && sameEmbedModel(recorded.model, setup.model)
        ? recorded.model
        : setup.model
    const dim = await ingest.embedder.dimension(model)
    // Not reachable (not pulled yet, Ollama down): the table's setup, if any, carries on until
    // the new one answers, rather than leaving every changed page without vectors.
    if (dim === null) return recorded
    // A new model or document prefix (or the first model): the table drops the old vectors,
    // never mixing two kinds; the pages keep their text, and one upkeep job gives every source's
    // chunks new vectors (this sync's finish step fills its own source's as well). A new query
    // prefix alone only changes what the table records.
    const prefixes = { document: setup.documentPrefix, query: setup.queryPrefix }
    const changed = await ingest.store.useEmbedding(model, dim, prefixes)
    if (changed === 'replaced' || changed === 'added') {
      await ingest.queues.sync.add(JobName.refill, {}, refillJobOptions())
    }
    return { model, dim, documentPrefix: setup.documentPrefix, queryPrefix: setup.queryPrefix }
  }

  /**
   * Pages whose text is unchanged but whose chunks' metadata is not (a move, a renamed ancestor
   * or space, labels): their stored chunks get the breadcrumb and labels a fresh sync would
   * give them, without fetching or converting the page. The breadcrumb is part of what is
   * embedded, so chunks whose breadcrumb changed get new vectors from their stored text (none,
   * until the fill, when no model is reachable). Returns the pages that were embedded.
   */
  async function restamp(sourceId: string, pages: readonly RestampPage[]): Promise<string[]> {
    const recorded = await ingest.store.embedding()
    const embedded: string[] = []
    for (let i = 0; i < pages.length; i += RESTAMP_PAGES) {
      const slice = new Map(pages.slice(i, i + RESTAMP_PAGES).map((p) => [p.page.id, p]))
      const rows = await ingest.store.pageChunks(sourceId, [...slice.keys()])
      const { kept, moved } = splitRestamp(rows, slice)
      await ingest.store.restampChunks(kept)
      if (moved.length === 0) continue
      // A table without a vector column has no vector to replace.
      if (recorded === null) {
        await ingest.store.restampChunks(moved)
        continue
      }
      // The table's model and document prefix, which this sync chose (or keeps); null while the
      // model cannot be reached.
      const input = documentInput(recorded.documentPrefix)
      const vectors = await ingest.embedder.embed(moved.map(input), recorded.model)
      await ingest.store.restampChunks(
        moved.map(({ page_id: _, text: __, ...item }, n) => ({
          ...item,
          vector: vectors?.[n] ?? null,
        })),
        recorded.model,
        recorded.documentPrefix,
      )
      if (vectors !== null) embedded.push(...new Set(moved.map((row) => row.page_id)))
    }
    return embedded
  }

  async function crawl(job: Job, data: SyncState, token: string, log: ProcessorDeps['log']) {
    const spec = await getSource(ingest.redis, data.source_id)
    if (spec === undefined) throw new UnrecoverableError(`source ${data.source_id} does not exist`)
    const runId = job.id as string
    // A crawl starts the run: counters of an earlier run of this job start again from zero. (An
    // attempt that died between queueing its batches and recording its step left those batches
    // out: they still write their pages, and this crawl queues its own under a new crawl id.)
    const run = runKeys(runId)
    await ingest.redis.del(run.counters, run.counted, run.errors)
    const crawlId = Date.now().toString(36)
    const embed = jobEmbedding(await chooseEmbedding())

    const source = await ingest.openSource(spec)
    const listed: PageRef[] = []
    let spaceNames: Map<string, string>
    let goneSpaces: string[]
    try {
      for await (const page of source.listPages()) listed.push(page)
      spaceNames = await source.spaceNames()
      goneSpaces = await source.goneSpaces()
    } catch (err) {
      throw asJobError(err)
    } finally {
      await source.close()
    }

    // An uploaded export names its space only inside the zip.
    const keys = [...spaceNames.keys()].sort()
    if (spec.kind === 'export' && keys.join() !== [...spec.spaces].sort().join()) {
      await updateSource(ingest.redis, { ...spec, spaces: keys })
    }

    const indexed = await ingest.store.pageStamps(spec.id)
    const catalog = catalogOf(listed)
    const kept = listed.filter((page) => indexed.has(page.id)).map((page) => page.id)
    const relinked = await relinkedPages(ingest.redis, spec.id, kept, catalog)
    const { changed, restamped, candidates } = planSync(
      { pages: listed, spaceNames },
      indexed,
      data.full === true,
      relinked,
    )
    // A page the listing left out is deleted only once its source confirms it is gone (a listing
    // can miss a live page; the check is cheap and in bulk).
    const gone =
      candidates.length === 0 ? [] : await confirmGone(await ingest.openSource(spec), candidates)
    await saveCatalog(ingest.redis, spec.id, listed, catalog)
    const embedded = await restamp(spec.id, restamped)

    // A space deleted in Confluence, or hidden from the source's user, does not stop the others:
    // the run reports it, and its pages are among the confirmed-gone ones, which the finish step
    // deletes under the same guard as any deletion (a permission glitch looks just like it).
    const spaceErrors = goneSpaces.map((key) => ({ message: goneSpaceMessage(key) }))
    for (const { message } of spaceErrors) log.warn({ source: spec.id }, message)
    await addToRun(
      ingest.redis,
      job.id as string,
      'crawl',
      { discovered: listed.length, unchanged: listed.length - changed.length },
      spaceErrors,
      embedded,
    )
    await ingest.redis.set(crawlKey(runId), crawlId, 'EX', RUN_TTL_S)
    await reportProgress(ingest, job.id as string)
    log.info(
      {
        source: spec.id,
        discovered: listed.length,
        changed: changed.length,
        restamped: restamped.length,
        gone: gone.length,
        gone_spaces: goneSpaces,
      },
      'crawl done',
    )

    const size = ingest.config.SYNC_BATCH_PAGES
    const space_names = Object.fromEntries(spaceNames)
    const batches = []
    for (let i = 0, n = 0; i < changed.length; i += size, n++) {
      const pages: BatchPage[] = changed.slice(i, i + size)
      const payload: PagesJobData = {
        source_id: spec.id,
        run_id: job.id as string,
        batch: n,
        embed,
        space_names,
        pages,
      }
      batches.push({
        name: JobName.pages,
        data: payload,
        opts: {
          ...structuredClone(defaultJobOptions),
          jobId: `${batchPrefix(runId, crawlId)}${n}`,
          parent: { id: job.id as string, queue: job.queueQualifiedName },
          // A batch that fails for good is reported by the sync, never blocks it.
          ignoreDependencyOnFailure: true,
        },
      })
    }
    if (batches.length > 0) await ingest.queues.pages.addBulk(batches as never)
    // The step is recorded only once every batch is queued: a crash or a Redis error before
    // that leaves the step unrecorded, and the retry crawls again instead of finishing a sync
    // whose changed pages were never written.
    await job.updateData({ ...requestOf(data), step: 'finish', gone, indexed: indexed.size, embed })
    if (batches.length > 0 && (await job.moveToWaitingChildren(token))) {
      throw new WaitingChildrenError()
    }
  }

  async function finish(job: Job, data: SyncState, log: ProcessorDeps['log']): Promise<SyncResult> {
    const runId = job.id as string
    // Deleted while its batches ran: they stopped writing, and its purge removes what they wrote.
    if ((await getSource(ingest.redis, data.source_id)) === undefined) {
      throw new UnrecoverableError(
        `source ${data.source_id} was deleted during the sync: its pages were not all written, and its purge removes those that were`,
      )
    }
    // Step data is checked against the source's latest listing: a page listed there exists now,
    // whatever an older (or forged) `gone` says.
    const stated = data.gone ?? []
    const listed = await listedPages(ingest.redis, data.source_id, stated)
    const gone = stated.filter((id) => !listed.has(id))
    const errors: Array<{ page_id?: string; message: string }> = []
    // A batch that failed for good (after its retries) did not block the sync; its pages count
    // as failed, each with the batch's reason. Only this run's batches count.
    let lost = 0
    const prefix = batchPrefix(runId, String(await ingest.redis.get(crawlKey(runId))))
    const failures = await job.getIgnoredChildrenFailures()
    for (const [key, reason] of Object.entries(failures)) {
      const id = key.slice(key.lastIndexOf(':') + 1)
      if (!id.startsWith(prefix)) continue
      const batch = await Job.fromId(ingest.queues.pages, id)
      /* c8 ignore next: a batch removed by hand leaves nothing to count */
      for (const page of (batch?.data as PagesJobData | undefined)?.pages ?? []) {
        errors.push({ page_id: page.id, message: reason })
        lost++
      }
      // The index refused the write: not one bad page but every write until it is fixed. The
      // sync fails saying so, rather than completing with its changes silently missing; its
      // data goes back to the request, so its retry crawls (and writes) again.
      if (isUnwritable(reason)) {
        await job.updateData(requestOf(data))
        throw new Error(reason)
      }
    }
    let deleted = 0
    const refusal = deleteRefusal(
      gone.length,
      data.indexed ?? 0,
      ingest.config.SYNC_MAX_DELETE_SHARE,
      data.force === true,
    )
    if (refusal !== null) errors.push({ message: refusal })
    else if (gone.length > 0) {
      await ingest.store.deletePages(data.source_id, gone)
      await dropLookups(ingest.redis, data.source_id, gone)
      deleted = gone.length
    }

    // Vectors missing for any reason (model was down, model changed) are filled in here, from
    // the stored text: no page is fetched or converted again for it.
    const embeddedPages = new Set<string>()
    const embed = data.embed ?? null
    if (embed !== null) {
      // Only while the table still records the setup the crawl chose (a sync that changed it
      // since fills these rows, or the refill does).
      const prefix = jobPrefixes(embed).document
      const current = await ingest.store.embedding()
      while (current?.model === embed.model && current.documentPrefix === prefix) {
        const rows = await ingest.store.rowsWithoutVectors(data.source_id, 256)
        if (rows.length === 0) break
        const vectors = await ingest.embedder.embed(rows.map(documentInput(prefix)), embed.model)
        if (vectors === null) break
        await ingest.store.setVectors(
          embed.model,
          rows.map((row, i) => ({ chunk_id: row.chunk_id, vector: vectors[i] as Float32Array })),
          prefix,
        )
        for (const row of rows) embeddedPages.add(row.page_id)
      }
    }
    await addToRun(ingest.redis, runId, 'finish', { deleted, failed: lost }, errors, [
      ...embeddedPages,
    ])
    // Index upkeep is a job of its own: the sync is done once its rows are written (and
    // searchable), and syncs of several sources share one index build instead of queueing
    // one each behind the writer lock.
    await ingest.queues.sync.add(JobName.maintain, {}, maintainJobOptions())
    await reportProgress(ingest, runId)
    const result = await readRun(ingest.redis, runId)
    const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage()
    const mb = (n: number) => Math.round(n / 2 ** 20)
    log.info(
      {
        source: data.source_id,
        ...result.progress,
        memory_mb: { rss: mb(rss), heap: mb(heapUsed), external: mb(external + arrayBuffers) },
      },
      'sync done',
    )
    return result
  }

  /** True when this job's run got through its finish step: running it again is a new run. */
  async function finished(job: Job): Promise<boolean> {
    return (await ingest.redis.sismember(runKeys(job.id as string).counted, 'finish')) === 1
  }

  return async function sync(job: Job, { log, token }: ProcessorDeps) {
    const data = job.data as SyncState
    if (!(await claim(job, data.source_id))) {
      log.info({ source: data.source_id }, 'a sync of this source is already running; skipped')
      return { skipped: 'a sync of this source is already running' }
    }
    if (data.step !== 'finish' || (await finished(job))) {
      await crawl(job, data, token as string, log)
    }
    const result = await finish(job, job.data as SyncState, log)
    // The run is over: its state leaves the job's data, so running the job again crawls again.
    await job.updateData(requestOf(data))
    await release(data.source_id, job)
    return result
  }
}

import { rm } from 'node:fs/promises'
import { basename, dirname, resolve } from 'node:path'
import {
  getSource,
  JobName,
  maintainJobOptions,
  type PurgeJobData,
  syncLockKey,
} from '@confluence-bot/shared'
import { DelayedError, type Job, UnrecoverableError } from 'bullmq'
import { dropCatalog } from '../ingest/catalog.ts'
import type { Ingest } from '../ingest/context.ts'
import type { ProcessorDeps } from '../worker.ts'

// A deleted source: its chunks leave the index, its page catalog leaves Redis, and an uploaded
// export zip leaves the exports directory. Safe to run twice. The job's data was checked against
// its schema (worker.ts); the export's path is checked here again, right where a file is
// deleted: a bare file name in EXPORTS_DIR, never a path that leads elsewhere. Only a source
// that is gone is purged: DELETE /api/sources/:id removes it before it queues the purge, while a
// purge queued by hand (the dashboard takes any valid data) for a registered source would leave
// it without rows or zip, and its next sync failing.
//
// A source can be deleted while its sync is still writing. Page batches check that their source
// is registered under the writer lock, right before they commit, so none writes after the
// deletion; still, a purge does not trust that alone (a worker of an older release, a writer
// that lost its lock mid-commit): while a sync of the source is in flight, each pass deletes
// what is there and comes back later, and the purge completes only with a pass made after that
// sync ended, so nothing it wrote outlives the purge.

/** Pause between passes of a purge while a sync of its source is still in flight. */
export const PURGE_RECHECK_MS = 2_000

/** Job states of a sync that may still write (everything but finished or gone). */
const SETTLED = new Set(['completed', 'failed', 'unknown'])

/** The export's file in EXPORTS_DIR, or an UnrecoverableError for a name that leaves it. */
export function exportFile(exportsDir: string, name: string): string {
  const dir = resolve(exportsDir)
  const file = resolve(dir, name)
  if (basename(name) !== name || dirname(file) !== dir) {
    throw new UnrecoverableError(
      `purge job data is invalid: export_path ${JSON.stringify(name)} is not a file name in EXPORTS_DIR`,
    )
  }
  return file
}

export function createPurgeProcessor(ingest: Ingest) {
  /** True while a sync of the source is running or about to run again (a retry). */
  async function syncInFlight(sourceId: string): Promise<boolean> {
    const holder = await ingest.redis.get(syncLockKey(sourceId))
    if (holder === null) return false
    return !SETTLED.has(await ingest.queues.sync.getJobState(holder))
  }

  return async function purge(job: Job, { log, token }: ProcessorDeps) {
    const data = job.data as PurgeJobData
    const file =
      data.export_path === undefined
        ? undefined
        : exportFile(ingest.config.EXPORTS_DIR, data.export_path)
    if ((await getSource(ingest.redis, data.source_id)) !== undefined) {
      throw new UnrecoverableError(
        `purge refused: source ${data.source_id} is still registered; delete it with DELETE /api/sources/${data.source_id}, which purges it`,
      )
    }
    // Asked before the delete: a sync that ends after this answer may have written before the
    // delete (removed now) but never after it (its writes see the source gone).
    const inFlight = await syncInFlight(data.source_id)
    // Rows deleted by earlier passes of this purge, kept in the job's progress.
    const before = job.progress as number
    const deleted = before + (await ingest.store.deleteSource(data.source_id))
    if (inFlight) {
      await job.updateProgress(deleted)
      log.info(
        { source: data.source_id, rows: deleted },
        'source purged while its sync is in flight; purged again once it ends',
      )
      await job.moveToDelayed(Date.now() + PURGE_RECHECK_MS, token)
      throw new DelayedError()
    }
    await dropCatalog(ingest.redis, data.source_id)
    if (file !== undefined) await rm(file, { force: true })
    await ingest.queues.sync.add(JobName.maintain, {}, maintainJobOptions())
    log.info({ source: data.source_id, rows: deleted }, 'source purged')
    return { rows_deleted: deleted }
  }
}

import { rm } from 'node:fs/promises'
import { basename, dirname, resolve } from 'node:path'
import { getSource, JobName, maintainJobOptions, type PurgeJobData } from '@confluence-bot/shared'
import { type Job, UnrecoverableError } from 'bullmq'
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
  return async function purge(job: Job, { log }: ProcessorDeps) {
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
    const deleted = await ingest.store.deleteSource(data.source_id)
    await dropCatalog(ingest.redis, data.source_id)
    if (file !== undefined) await rm(file, { force: true })
    await ingest.queues.sync.add(JobName.maintain, {}, maintainJobOptions())
    log.info({ source: data.source_id, rows: deleted }, 'source purged')
    return { rows_deleted: deleted }
  }
}

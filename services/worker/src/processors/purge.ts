import { rm } from 'node:fs/promises'
import { resolve } from 'node:path'
import { JobName, maintainJobOptions, type PurgeJobData } from '@confluence-bot/shared'
import type { Job } from 'bullmq'
import { dropCatalog } from '../ingest/catalog.ts'
import type { Ingest } from '../ingest/context.ts'
import type { ProcessorDeps } from '../worker.ts'

// A deleted source: its chunks leave the index, its page catalog leaves Redis, and an uploaded
// export zip leaves the exports directory. Safe to run twice.

export function createPurgeProcessor(ingest: Ingest) {
  return async function purge(job: Job, { log }: ProcessorDeps) {
    const data = job.data as PurgeJobData & { export_path?: string }
    const deleted = await ingest.store.deleteSource(data.source_id)
    await dropCatalog(ingest.redis, data.source_id)
    if (data.export_path !== undefined) {
      await rm(resolve(ingest.config.EXPORTS_DIR, data.export_path), { force: true })
    }
    await ingest.queues.sync.add(JobName.maintain, {}, maintainJobOptions())
    log.info({ source: data.source_id, rows: deleted }, 'source purged')
    return { rows_deleted: deleted }
  }
}

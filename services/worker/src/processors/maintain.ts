import type { Job } from 'bullmq'
import type { Ingest } from '../ingest/context.ts'
import type { ProcessorDeps } from '../worker.ts'

// Index upkeep after syncs: the full-text index, the vector index once the table is large
// enough, scalar indexes, then compaction (which also folds new rows into the indexes and
// prunes old versions). Queued by every sync, deduplicated while one waits.

export function createMaintainProcessor(ingest: Ingest) {
  return async function maintain(_job: Job, { log }: ProcessorDeps) {
    const started = performance.now()
    const report = await ingest.store.maintain()
    const ms = Math.round(performance.now() - started)
    log.info({ ...report, ms }, 'index maintained')
    return { ...report, ms }
  }
}

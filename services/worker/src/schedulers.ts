import { listSources, scheduledSyncTemplate, syncSchedulerId } from '@confluence-bot/shared'
import type { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'

// The periodic syncs, reconciled at boot: the api creates and removes a source's Job Scheduler
// with the source, and this makes the schedulers match the registry again after anything that
// may have split them (a crash between the two writes, a restored Redis). Idempotent.

export async function reconcileSchedulers(redis: Redis, queue: Queue, log: Logger): Promise<void> {
  const sources = await listSources(redis)
  const wanted = new Map(
    sources.filter((s) => s.schedule !== undefined).map((s) => [syncSchedulerId(s.id), s]),
  )
  for (const [id, spec] of wanted) {
    await queue.upsertJobScheduler(
      id,
      { pattern: spec.schedule as string, tz: 'UTC' },
      scheduledSyncTemplate(spec.id),
    )
  }
  for (const scheduler of await queue.getJobSchedulers()) {
    if (!wanted.has(scheduler.key)) {
      await queue.removeJobScheduler(scheduler.key)
      log.info({ scheduler: scheduler.key }, 'removed the schedule of a deleted source')
    }
  }
}

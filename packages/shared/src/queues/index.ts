// The queue contract shared by the api (producer) and the worker (consumer): queue names, job
// names and payloads, the key prefix, default job options and job-id builders. Plain data only:
// each service builds its own Queue/Worker instances from these definitions in its composition
// root.

export const QUEUE_PREFIX = 'cnfl'

export const QueueName = {
  /** One job per sync of a source: list, diff, fan out page batches, then delete and maintain. */
  sync: 'confluence-sync',
  /** Batches of changed pages: fetch, convert, chunk, embed and write; spread over workers. */
  pages: 'confluence-pages',
} as const

export type QueueNameValue = (typeof QueueName)[keyof typeof QueueName]

export const ALL_QUEUES: readonly QueueNameValue[] = Object.values(QueueName)

export const JobName = {
  sync: 'sync',
  pages: 'pages',
  /** Removes every chunk of a deleted source. */
  purge: 'purge',
  /** Index upkeep after writes: full-text and vector indexes, compaction. */
  maintain: 'maintain',
} as const

export type SyncJobData = {
  source_id: string
  /** Reconvert and re-embed every page, not only the changed ones. */
  full?: boolean
  /** Delete pages gone from Confluence even beyond SYNC_MAX_DELETE_SHARE. */
  force?: boolean
}

export type PurgeJobData = { source_id: string }

/** Counters a sync reports through job.updateProgress (dashboard and GET /api/jobs/:id). */
export type SyncProgress = {
  discovered: number
  converted: number
  embedded: number
  unchanged: number
  deleted: number
  failed: number
}

export const emptyProgress = (): SyncProgress => ({
  discovered: 0,
  converted: 0,
  embedded: 0,
  unchanged: 0,
  deleted: 0,
  failed: 0,
})

/** What a finished sync returns (job.returnvalue); errors are per page where a page is known. */
export type SyncResult = {
  progress: SyncProgress
  errors: Array<{ page_id?: string; message: string }>
}

/** Retries with exponential backoff and jitter; bounded retention by count and age. */
export const defaultJobOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 2_000, jitter: 0.5 },
  removeOnComplete: { count: 1_000, age: 7 * 24 * 3600 },
  removeOnFail: { count: 5_000, age: 30 * 24 * 3600 },
} as const

/** Builds a job id from parts: `-` separated, never `:`, never digits only. */
export function jobId(kind: string, ...parts: Array<string | number>): string {
  const clean = [kind, ...parts].map((p) => String(p).replace(/[^A-Za-z0-9_.-]+/g, '_'))
  return clean.join('-')
}

/** The Job Scheduler that runs a source's periodic sync. */
export const syncSchedulerId = (sourceId: string) => jobId('schedule', sourceId)

/** One maintenance job waits at a time, however many syncs asked for one. */
export const MAINTAIN_DEDUP_ID = 'maintain-index'

/** Deduplication key: one sync of a source waits or runs at a time. */
export const syncDedupId = (sourceId: string) => jobId('sync', sourceId)

/** Redis keys of one sync run (keyed by the sync job id), kept as long as failed jobs are. */
export const runKeys = (syncJobId: string) => ({
  counters: `${QUEUE_PREFIX}:run:${syncJobId}`,
  /** Page batches already counted, so a retried batch is not counted twice. */
  counted: `${QUEUE_PREFIX}:run:${syncJobId}:counted`,
  errors: `${QUEUE_PREFIX}:run:${syncJobId}:errors`,
})

export const RUN_TTL_S = defaultJobOptions.removeOnFail.age

/** Per-page errors kept per run; beyond this the count still grows, the list does not. */
export const MAX_RUN_ERRORS = 1_000

/** The job a source's Job Scheduler creates on each tick. */
export const scheduledSyncTemplate = (sourceId: string) => ({
  name: JobName.sync,
  data: { source_id: sourceId } satisfies SyncJobData,
})

/** Options of a new sync job: a fresh id, deduplicated per source while one waits or runs. */
export const syncJobOptions = (sourceId: string) => ({
  jobId: jobId('sync', sourceId, Date.now()),
  deduplication: { id: syncDedupId(sourceId) },
})

/** Options of an index upkeep job: one waits at a time, however many writers ask. */
export const maintainJobOptions = () => ({
  jobId: jobId('maintain', Date.now()),
  deduplication: { id: MAINTAIN_DEDUP_ID },
})

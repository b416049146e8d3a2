// The queue contract shared by the api (producer) and the worker (consumer): queue names, the
// key prefix, default job options and job-id builders. Plain data only: each service builds
// its own Queue/Worker instances from these definitions in its composition root.

export const QUEUE_PREFIX = 'cnfl'

export const QueueName = {
  /** Crawls a Confluence source and keeps its pages in the index (jobs arrive with ingestion). */
  sync: 'confluence-sync',
} as const

export type QueueNameValue = (typeof QueueName)[keyof typeof QueueName]

export const ALL_QUEUES: readonly QueueNameValue[] = Object.values(QueueName)

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

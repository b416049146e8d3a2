import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client'

// The worker's Prometheus metrics, served by its probe endpoint at /metrics (health.ts). They are
// counted where the work happens (the job wrapper in worker.ts, page batches, the embedder, the
// Confluence client), so they live in one registry per process, like the process itself.
// Source labels are source ids: as many as an operator registers, never page or job ids.

const PREFIX = 'confluence_bot_worker_'

export const workerRegistry = new Registry()

// From a page batch of a second to a sync crawl of an hour.
const JOB_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]
const EMBED_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

export const jobDuration = new Histogram({
  name: `${PREFIX}job_duration_seconds`,
  help: 'Time one run of a job takes, by queue, job name and outcome (completed, failed, or moved: a sync that waits for its page batches)',
  labelNames: ['queue', 'job', 'outcome'] as const,
  buckets: JOB_BUCKETS,
  registers: [workerRegistry],
})

export const jobFailures = new Counter({
  name: `${PREFIX}job_failures_total`,
  help: 'Job runs that failed (each attempt; BullMQ retries them), by queue and job name',
  labelNames: ['queue', 'job'] as const,
  registers: [workerRegistry],
})

export const pagesIndexed = new Counter({
  name: `${PREFIX}pages_indexed_total`,
  help: 'Pages converted and written to the index, by source',
  labelNames: ['source'] as const,
  registers: [workerRegistry],
})

export const chunksIndexed = new Counter({
  name: `${PREFIX}chunks_indexed_total`,
  help: 'Chunks written to the index, by source',
  labelNames: ['source'] as const,
  registers: [workerRegistry],
})

export const embedDuration = new Histogram({
  name: `${PREFIX}embed_duration_seconds`,
  help: 'Time one Ollama embed call (one batch of EMBED_BATCH_SIZE texts) takes, failed ones included',
  buckets: EMBED_BUCKETS,
  registers: [workerRegistry],
})

export const embedFailures = new Counter({
  name: `${PREFIX}embed_failures_total`,
  help: 'Ollama embed calls that failed: unreachable (no connection, or the model is not pulled: chunks are stored without vectors) or error (the job retries)',
  labelNames: ['kind'] as const,
  registers: [workerRegistry],
})

export const confluenceErrors = new Counter({
  name: `${PREFIX}confluence_errors_total`,
  help: 'Failed Confluence requests (each attempt), by source and error code; code="rate_limited" counts the 429s',
  labelNames: ['source', 'code'] as const,
  registers: [workerRegistry],
})

let defaults = false
/** Starts prom-client's process metrics (CPU, memory, event loop, GC) once per process. */
export function collectProcessMetrics(): void {
  if (defaults) return
  defaults = true
  collectDefaultMetrics({ register: workerRegistry })
}

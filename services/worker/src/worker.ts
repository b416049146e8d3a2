import { hostname } from 'node:os'
import {
  ALL_QUEUES,
  claimEmbedModel,
  configuredEmbedSetup,
  EMBED_CLAIM_MS,
  isJobName,
  jobDataProblem,
  QUEUE_PREFIX,
  type QueueNameValue,
  redactUrl,
  type WorkerConfig,
  withdrawEmbedModel,
} from '@confluence-bot/shared'
import { DelayedError, type Job, UnrecoverableError, WaitingChildrenError, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { startHealthServer } from './health.ts'
import { collectProcessMetrics, jobDuration, jobFailures } from './metrics.ts'
import { storageFault } from './store/storage.ts'

// Builds one BullMQ Worker per queue of the shared contract, wraps every processor with a check
// of the job's data against its shared schema and a per-job logger, and owns the shutdown
// order: stop taking jobs and let the active ones finish, then close Redis and the probe
// endpoint.

export type ProcessorDeps = {
  log: Logger
  config: WorkerConfig
  /** The job's lock token (for moveToWaitingChildren and friends). */
  token?: string
}
export type Processor = (job: Job, deps: ProcessorDeps) => Promise<unknown>
export type ProcessorRegistry = Partial<Record<QueueNameValue, Record<string, Processor>>>

export type RunningWorker = {
  workers: Worker[]
  healthPort: number
  /** Resolves when every worker is running (connected to Redis). */
  ready(): Promise<void>
  close(): Promise<void>
}

/** Worker deaths a job outlives (each time it is found stalled and run again). */
export const MAX_STALLS = 5

export async function startWorker(
  config: WorkerConfig,
  log: Logger,
  registry: ProcessorRegistry = {},
  /** How readiness looks at the index's storage (a test names a fault without a file system). */
  checks: { storageFault: typeof storageFault } = { storageFault },
): Promise<RunningWorker> {
  // Workers block on Redis, so their connection must never give up on a command.
  const connection = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null })
  let redisDown = false
  connection.on('error', (err: NodeJS.ErrnoException) => {
    if (redisDown) return
    redisDown = true
    log.warn(
      { code: err.code },
      `Redis at REDIS_URL=${redactUrl(config.REDIS_URL)} is unreachable; retrying`,
    )
  })
  connection.on('ready', () => {
    redisDown = false
  })

  let closing = false
  const workers = ALL_QUEUES.map((queue) => {
    const processors = registry[queue] ?? {}
    const worker = new Worker(
      queue,
      async (job, token) => {
        const processor = processors[job.name]
        // A name no processor has (the dashboard queues any) is one label, not one label each.
        const name = processor ? job.name : '(unknown)'
        const end = jobDuration.startTimer({ queue, job: name })
        try {
          if (!processor) {
            throw new UnrecoverableError(`No processor for job "${job.name}" on queue "${queue}"`)
          }
          // Whoever queued it (the dashboard takes any data): a processor sees valid data only.
          const problem = isJobName(job.name) ? jobDataProblem(job.name, job.data) : undefined
          if (problem !== undefined) {
            throw new UnrecoverableError(`${job.name} job data is invalid: ${problem}`)
          }
          // Every line a job writes names it, its attempt and (for a source's jobs) the source.
          const sourceId = (job.data as { source_id?: unknown }).source_id
          const jobLog = log.child({
            queue,
            jobName: job.name,
            jobId: job.id,
            attempt: job.attemptsMade + 1,
            ...(typeof sourceId === 'string' ? { sourceId } : {}),
          })
          const result = await processor(job, { log: jobLog, config, token })
          end({ outcome: 'completed' })
          return result
        } catch (err) {
          // A sync moving itself to wait for its page batches is not a failure.
          if (err instanceof WaitingChildrenError || err instanceof DelayedError) {
            end({ outcome: 'moved' })
          } else {
            end({ outcome: 'failed' })
            jobFailures.inc({ queue, job: name })
          }
          throw err
        }
      },
      {
        connection,
        prefix: QUEUE_PREFIX,
        concurrency: config.WORKER_CONCURRENCY,
        autorun: true,
        // Stored on each job it runs (processedBy), so the dashboard tells workers apart.
        name: `${hostname()}:${process.pid}`,
        // A job whose worker died is seen as stalled once its lock lapses, then run again.
        lockDuration: config.WORKER_LOCK_MS,
        stalledInterval: config.WORKER_LOCK_MS,
        // BullMQ's default (1) fails a job whose worker died twice during it, attempts left or
        // not: two rollouts or OOM kills during one long crawl lost the sync. A job that kills
        // every worker that runs it still fails, after this many.
        maxStalledCount: MAX_STALLS,
      },
    )
    worker.on('error', (err) => log.error({ err, queue }, 'worker error'))
    worker.on('failed', (job, err) =>
      log.warn({ queue, jobName: job?.name, jobId: job?.id, err: err.message }, 'job failed'),
    )
    worker.on('stalled', (jobId) => log.warn({ queue, jobId }, 'job stalled; it will be retried'))
    return worker
  })

  // This worker's EMBED_MODEL and prefixes count among the live workers' while it runs
  // (embeddingInForce): a claim renewed on a timer, withdrawn on close. Not waited for here: with
  // Redis down the worker still starts, and the claim lands once it is up.
  const workerName = `${hostname()}:${process.pid}:${Date.now().toString(36)}`
  const embedSetup = configuredEmbedSetup(config)
  const claim = () =>
    claimEmbedModel(connection, workerName, embedSetup).catch(
      /* c8 ignore next: the connection retries until it closes */
      (err: Error) => log.warn({ err: err.message }, 'could not record EMBED_MODEL'),
    )
  const claimed = claim()
  const renew = setInterval(claim, EMBED_CLAIM_MS / 3)
  renew.unref()

  collectProcessMetrics()
  const health = await startHealthServer(
    config.WORKER_HEALTH_HOST,
    config.WORKER_HEALTH_PORT,
    async () => {
      const started = performance.now()
      const pong = await Promise.race([
        connection.ping().then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((resolve) => setTimeout(resolve, 2_000, false).unref()),
      ])
      const running = workers.every((w) => w.isRunning())
      // A worker whose index cannot take writes fails every batch: it says why here.
      const storage = await checks.storageFault(config.LANCEDB_URI)
      return {
        ready: pong && running && !closing && storage === undefined,
        detail: {
          redis: {
            status: pong ? 'ok' : 'down',
            latency_ms: Math.round(performance.now() - started),
          },
          storage: storage === undefined ? { status: 'ok' } : { status: 'down', error: storage },
          running: Object.fromEntries(workers.map((w) => [w.name, w.isRunning()])),
          shutting_down: closing,
        },
      }
    },
    config.METRICS_TOKEN,
  )
  log.info({ queues: ALL_QUEUES, healthPort: health.port }, 'worker started')

  return {
    workers,
    healthPort: health.port,
    ready: async () => {
      await Promise.all([claimed, ...workers.map((w) => w.waitUntilReady())])
    },
    async close() {
      closing = true
      clearInterval(renew)
      // With Redis gone nothing can be drained (a job cannot even be marked done), so the
      // connection is dropped first and pending commands fail instead of waiting forever.
      if (connection.status !== 'ready') connection.disconnect()
      await Promise.all(workers.map((w) => w.close(connection.status !== 'ready')))
      if (connection.status === 'ready') {
        // Its model no longer holds the table for the workers that stay.
        await withdrawEmbedModel(connection, workerName, embedSetup)
        await connection.quit().catch(() => connection.disconnect())
      }
      await health.close()
      log.info('worker stopped')
    },
  }
}

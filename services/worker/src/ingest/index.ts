import { resolve } from 'node:path'
import {
  createKeyring,
  defaultJobOptions,
  JobName,
  QUEUE_PREFIX,
  QueueName,
  resealInBackground,
  type SourceAuth,
  type SourceSpec,
  sourceAuth,
  type WorkerConfig,
} from '@confluence-bot/shared'
import { Queue, UnrecoverableError } from 'bullmq'
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { openExportSource } from '../confluence/export.ts'
import { openRestSource } from '../confluence/open.ts'
import { createEmbedder } from '../embed/embedder.ts'
import { createMaintainProcessor, createRefillProcessor } from '../processors/maintain.ts'
import { createPagesProcessor } from '../processors/pages.ts'
import { createPurgeProcessor } from '../processors/purge.ts'
import { createSyncProcessor } from '../processors/sync.ts'
import { reconcileSchedulers } from '../schedulers.ts'
import { openChunkStore } from '../store/chunks.ts'
import type { ProcessorRegistry } from '../worker.ts'
import type { Ingest } from './context.ts'

// The composition root of ingestion in one worker process: one command connection, the chunk
// store, the embedder, the producer queues (for page batches and progress), and the processors
// registered by queue and job name.

const unrecoverable = (err: Error): never => {
  throw new UnrecoverableError(err.message)
}

/** Credentials of a source registered without any: the CONFLUENCE_* settings, if set. */
export function defaultAuth(config: WorkerConfig): SourceAuth | undefined {
  if (config.CONFLUENCE_TOKEN === '') return undefined
  return config.CONFLUENCE_USERNAME === ''
    ? { type: 'bearer', token: config.CONFLUENCE_TOKEN }
    : { type: 'basic', username: config.CONFLUENCE_USERNAME, token: config.CONFLUENCE_TOKEN }
}

export type RunningIngest = { ingest: Ingest; registry: ProcessorRegistry; close(): Promise<void> }

export async function createIngest(config: WorkerConfig, log: Logger): Promise<RunningIngest> {
  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null })
  const keyring = createKeyring(config)
  redis.on('error', () => {}) // reported by the worker's own connection
  // The contract's retries and retention for every job the worker queues itself: upkeep, page
  // batches and the syncs its Job Schedulers create (like the api's queues).
  const options = () => ({
    connection: redis,
    prefix: QUEUE_PREFIX,
    defaultJobOptions: structuredClone(defaultJobOptions) as never,
  })
  const queues = {
    sync: new Queue(QueueName.sync, options()),
    pages: new Queue(QueueName.pages, options()),
  }
  for (const queue of Object.values(queues)) queue.on('error', () => {}) // reported as above
  const store = await openChunkStore({
    uri: config.LANCEDB_URI,
    redis,
    log,
    vectorIndexMinRows: config.VECTOR_INDEX_MIN_ROWS,
  })
  const embedder = createEmbedder({
    url: config.OLLAMA_URL,
    model: config.EMBED_MODEL,
    batchSize: config.EMBED_BATCH_SIZE,
  })
  const ingest: Ingest = {
    config,
    redis,
    store,
    embedder,
    queues,
    async openSource(spec: SourceSpec) {
      if (spec.kind === 'export') {
        const path = resolve(config.EXPORTS_DIR, spec.export_path as string)
        return openExportSource({ ...spec, export_path: path }, { log })
      }
      // Commands wait for Redis to come back (maxRetriesPerRequest: null), so what fails here
      // is credentials no configured key opens: a retry cannot help.
      const stored = await sourceAuth(redis, spec.id, keyring).catch(unrecoverable)
      const auth = stored ?? defaultAuth(config)
      return openRestSource(spec, auth, { redis, log, config })
    },
  }
  // In the background: with Redis down the worker still starts, and this runs once it is back.
  reconcileSchedulers(redis, queues.sync, log).catch((err: Error) =>
    log.warn({ err: err.message }, 'could not reconcile the sync schedules'),
  )
  // Credentials in clear (earlier versions) or under SECRETS_KEY_PREVIOUS are sealed under
  // SECRETS_KEY now rather than at their next sync, so a rotation can finish (SECURITY.md).
  void resealInBackground(redis, keyring, log)
  const registry: ProcessorRegistry = {
    [QueueName.sync]: {
      [JobName.sync]: createSyncProcessor(ingest),
      [JobName.purge]: createPurgeProcessor(ingest),
      [JobName.maintain]: createMaintainProcessor(ingest),
      [JobName.refill]: createRefillProcessor(ingest),
    },
    [QueueName.pages]: { [JobName.pages]: createPagesProcessor(ingest) },
  }
  return {
    ingest,
    registry,
    async close() {
      await Promise.all([queues.sync.close(), queues.pages.close()])
      await store.close?.()
      await redis.quit().catch(() => redis.disconnect())
    },
  }
}

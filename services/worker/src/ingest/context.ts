import type { SourceSpec, WorkerConfig } from '@confluence-bot/shared'
import type { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import type { ConfluenceSource } from '../confluence/types.ts'
import type { Embedder } from '../embed/embedder.ts'
import type { ChunkStore } from '../store/chunks.ts'

/** What the ingestion processors share in one worker process (built in ingest/index.ts). */
export type Ingest = {
  config: WorkerConfig
  /** Commands only (registry, counters, locks); BullMQ's blocking reads use their own. */
  redis: Redis
  store: ChunkStore
  embedder: Embedder
  openSource(spec: SourceSpec): Promise<ConfluenceSource>
  queues: { sync: Queue; pages: Queue }
}

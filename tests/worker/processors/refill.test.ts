import type { WorkerConfig } from '@confluence-bot/shared'
import type { Job } from 'bullmq'
import { pino } from 'pino'
import t from 'tap'
import type { Ingest } from '../../../services/worker/src/ingest/context.ts'
import { createRefillProcessor } from '../../../services/worker/src/processors/maintain.ts'

// The refill works from the table's state: it leaves a table of another model alone, and an
// unreachable model fails the attempt (the job's backoff retries it).

const job = () => {
  const progress: unknown[] = []
  return {
    progress,
    job: { updateProgress: async (p: unknown) => progress.push(p) } as never as Job,
  }
}
const log = pino({ level: 'silent' })
const row = { chunk_id: 's:p:0', page_id: 'p', breadcrumb: 'A', text: 'x' }

const ingestWith = (recorded: string, vectors: Float32Array[] | null) =>
  ({
    config: { EMBED_MODEL: 'embed' } as WorkerConfig,
    store: {
      embedding: async () => ({ model: recorded, dim: 2 }),
      countWithoutVectors: async () => 1,
      rowsWithoutVectors: async () => [row],
      setVectors: async () => 1,
    },
    embedder: { embed: async () => vectors },
  }) as never as Ingest

t.test('a table recording another model is left to its next sync', async (t) => {
  const { job: j, progress } = job()
  const result = await createRefillProcessor(ingestWith('other', []))(j, { log } as never)
  t.same(result, { filled: 0, remaining: 1 })
  t.same(progress, [{ filled: 0, remaining: 1 }])
})

t.test('an unreachable model fails the attempt', async (t) => {
  const { job: j } = job()
  await t.rejects(createRefillProcessor(ingestWith('embed:latest', null))(j, { log } as never), {
    message: 'embedding model embed:latest unreachable',
  })
})

import { syncLockKey, type WorkerConfig } from '@confluence-bot/shared'
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

/** Two registered sources; `syncing` holds its sync lock (the real key, as a sync sets it). */
const sources = ['src_00000000000a', 'src_00000000000b']
const syncing = new Set<string>()
const excluded: unknown[] = []
const inputs: string[] = []
const stored: string[] = []

/** The worker runs `embed` with no prefixes configured (an unknown model: none by default). */
const ingestWith = (recorded: string, vectors: Float32Array[] | null, documentPrefix = '') =>
  ({
    config: {
      EMBED_MODEL: 'embed',
      EMBED_QUERY_PREFIX: '',
      EMBED_DOCUMENT_PREFIX: '',
    } as WorkerConfig,
    redis: {
      hvals: async () =>
        sources.map((id) => JSON.stringify({ id, name: id, created_at: '2026-01-01T00:00:00Z' })),
      exists: async (key: string) => (syncing.has(key) ? 1 : 0),
      zrangebyscore: async () => [],
    },
    store: {
      embedding: async () => ({ model: recorded, dim: 2, documentPrefix, queryPrefix: 'q: ' }),
      countWithoutVectors: async () => 1,
      rowsWithoutVectors: async (_source: unknown, _limit: unknown, except: unknown) => {
        excluded.push(except)
        return excluded.length > 1 ? [] : [row]
      },
      setVectors: async (_model: string, _items: unknown, prefix: string) => {
        stored.push(prefix)
        return 1
      },
    },
    embedder: {
      embed: async (texts: string[]) => {
        inputs.push(...texts)
        return vectors
      },
    },
  }) as never as Ingest

t.test('a table recording another model is left to its next sync', async (t) => {
  const { job: j, progress } = job()
  const result = await createRefillProcessor(ingestWith('other', []))(j, { log } as never)
  t.same(result, { filled: 0, remaining: 1 })
  t.same(progress, [{ filled: 0, remaining: 1 }])
})

t.test(
  'a table whose vectors carry another document prefix is left to its next sync',
  async (t) => {
    inputs.length = 0
    const { job: j, progress } = job()
    const result = await createRefillProcessor(ingestWith('embed', [], 'passage: '))(j, {
      log,
    } as never)
    t.same(result, { filled: 0, remaining: 1 })
    t.same(progress, [{ filled: 0, remaining: 1 }])
    t.same(inputs, [], 'nothing embedded')
  },
)

t.test('an unreachable model fails the attempt', async (t) => {
  const { job: j } = job()
  await t.rejects(createRefillProcessor(ingestWith('embed:latest', null))(j, { log } as never), {
    message: 'embedding model embed:latest unreachable',
  })
})

t.test('a source whose sync is under way is left to that sync', async (t) => {
  excluded.length = 0
  inputs.length = 0
  syncing.add(syncLockKey('src_00000000000b'))
  t.teardown(() => syncing.clear())
  const { job: j } = job()
  const result = await createRefillProcessor(ingestWith('embed', [Float32Array.of(1, 0)]))(j, {
    log,
  } as never)
  t.same(result, { filled: 1, remaining: 0 })
  t.same(excluded, [['src_00000000000b'], ['src_00000000000b']], 'its rows are not asked for')
  // Another query prefix than the table's makes the same vectors: the refill goes on, with the
  // table's document prefix.
  t.same(inputs, ['A\n\nx'])
  t.same(stored, [''])
})

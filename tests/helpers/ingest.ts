import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  CHUNKS_TABLE,
  createKeyring,
  createSource,
  type Env,
  JobName,
  loadWorkerConfig,
  QUEUE_PREFIX,
  QueueName,
  readRun,
  type SourceInput,
  type SyncResult,
  syncJobOptions,
  type WorkerConfig,
} from '@confluence-bot/shared'
import * as lancedb from '@lancedb/lancedb'
import { Queue } from 'bullmq'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import type { Test } from 'tap'
import { createIngest, type RunningIngest } from '../../services/worker/src/ingest/index.ts'
import { type RunningWorker, startWorker } from '../../services/worker/src/worker.ts'
import { ADMIN_KEY, listenTestApp, READER_KEY, TEST_SECRETS_KEY, tempDir } from './api.ts'
import {
  type ConfluenceStandIn,
  type ConfluenceStandInOptions,
  type StandInPage,
  startConfluenceStandIn,
} from './confluence-stand-in.ts'
import { standIn } from './ollama.ts'
import { DEFAULT_MODELS, type OllamaStandIn, type StandInOptions } from './ollama-stand-in.ts'
import { startRedis, type TestRedis } from './redis.ts'

// A whole ingestion rig for end-to-end tests: real Redis, real LanceDB in a temp directory,
// real BullMQ workers (in this process, or as child processes), and the Ollama and Confluence
// stand-ins. Everything is torn down with the test.

type T = { teardown(fn: () => unknown): void }

const FIXTURES = fileURLToPath(
  new URL(
    '../../../shared/fixtures/confluence/querypie__querypie-docs/confluence-mdx/tests/testcases/',
    import.meta.url,
  ),
)

/** The real querypie Cloud pages (storage bodies, titles, parents), or null without ../shared. */
export function querypieSpace(): StandInPage[] | null {
  if (!existsSync(FIXTURES)) return null
  const ids = readdirSync(FIXTURES).filter(
    (d) =>
      existsSync(join(FIXTURES, d, 'page.xhtml')) && existsSync(join(FIXTURES, d, 'page.v1.json')),
  )
  const pages: StandInPage[] = []
  for (const id of ids.sort()) {
    const v1 = JSON.parse(readFileSync(join(FIXTURES, id, 'page.v1.json'), 'utf8')) as {
      title: string
      ancestors?: Array<{ id: string }>
    }
    const parent = v1.ancestors?.at(-1)?.id
    pages.push({
      id,
      title: v1.title,
      spaceKey: 'QM',
      parentId: parent !== undefined && ids.includes(parent) ? parent : undefined,
      version: 1,
      storage: readFileSync(join(FIXTURES, id, 'page.xhtml'), 'utf8'),
    })
  }
  return pages
}

/** `count` generated pages of realistic size in a small tree, ids from 1001. */
export function generatedSpace(count: number, spaceKey = 'ENG'): StandInPage[] {
  return Array.from({ length: count }, (_, i) => ({
    id: String(1001 + i),
    title: `Page ${i + 1} of ${spaceKey}`,
    spaceKey,
    parentId: i === 0 ? undefined : String(1001 + Math.floor((i - 1) / 5)),
    version: 1,
    storage:
      `<h1>Section ${i}</h1><p>Words about topic ${i} and the ${spaceKey} space.</p>` +
      `<h2>Details</h2><p>${'detail '.repeat(40 + (i % 7) * 30)}</p>`,
    updatedAt: '2024-05-01T10:00:00.000Z',
  }))
}

export type Rig = {
  redis: TestRedis
  client: Redis
  ollama: OllamaStandIn
  confluence: ConfluenceStandIn
  env: Record<string, string>
  config: WorkerConfig
  lancedbUri: string
  register(input?: Partial<SourceInput>): Promise<string>
  /** Starts a worker in this process (stopped with the test). */
  startWorker(env?: Env): Promise<{ worker: RunningWorker; ingest: RunningIngest }>
  /** Enqueues a sync as the api does, returns its job id. */
  enqueue(sourceId: string, data?: { full?: boolean; force?: boolean }): Promise<string>
  /** Waits until a job has finished; returns its state and the run's counters. */
  waitFor(
    jobId: string,
    timeoutMs?: number,
  ): Promise<SyncResult & { state: string; failedReason?: string }>
  /** Every chunk row of the index (vectors included), sorted by chunk id. */
  rows(): Promise<Array<Record<string, unknown>>>
}

export async function ingestRig(
  t: T,
  options: {
    pages: StandInPage[]
    confluence?: Partial<ConfluenceStandInOptions>
    ollama?: Partial<StandInOptions>
    env?: Env
  },
): Promise<Rig> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const client = new Redis(redis.url, { maxRetriesPerRequest: null })
  t.teardown(() => client.quit())
  const ollama = await standIn(t, { embedDimension: 32, ...options.ollama })
  const confluence = await startConfluenceStandIn({ pages: options.pages, ...options.confluence })
  t.teardown(() => confluence.close())
  const lancedbUri = join(await tempDir(t, 'cnfl-ingest-'), 'lancedb')
  const env: Record<string, string> = {
    LOG_LEVEL: 'silent',
    REDIS_URL: redis.url,
    OLLAMA_URL: ollama.url,
    LANCEDB_URI: lancedbUri,
    EXPORTS_DIR: join(lancedbUri, '..', 'exports'),
    CONFLUENCE_ALLOWED_HOSTS: '127.0.0.1',
    CONFLUENCE_REQUESTS_PER_SECOND: '1000',
    WORKER_HEALTH_PORT: '0',
    WORKER_LOCK_MS: '2000',
    SYNC_BATCH_PAGES: '5',
    VECTOR_INDEX_MIN_ROWS: '100000',
    SECRETS_KEY: TEST_SECRETS_KEY,
    ...(options.env as Record<string, string>),
  }
  const config = loadWorkerConfig(env)
  const queue = new Queue(QueueName.sync, { connection: client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())

  return {
    redis,
    client,
    ollama,
    confluence,
    env,
    config,
    lancedbUri,
    async register(input = {}) {
      const spec = await createSource(
        client,
        {
          name: 'Test space',
          kind: confluence.options.deployment === 'dc' ? 'datacenter' : 'cloud',
          base_url: confluence.baseUrl,
          spaces: [...new Set(options.pages.map((p) => p.spaceKey))],
          ...input,
        },
        undefined,
        createKeyring(config),
      )
      return spec.id
    },
    async startWorker(overrides = {}) {
      const cfg = loadWorkerConfig({ ...env, ...(overrides as Record<string, string>) })
      const log = pino({ level: 'silent' })
      const ingest = await createIngest(cfg, log)
      const worker = await startWorker(cfg, log, ingest.registry)
      t.teardown(async () => {
        await worker.close()
        await ingest.close()
      })
      await worker.ready()
      return { worker, ingest }
    },
    async enqueue(sourceId, data = {}) {
      const job = await queue.add(
        JobName.sync,
        { source_id: sourceId, ...data },
        syncJobOptions(sourceId),
      )
      return job.id as string
    },
    async waitFor(id, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const state = await queue.getJobState(id)
        if (state === 'completed' || state === 'failed') {
          const job = await queue.getJob(id)
          return { state, failedReason: job?.failedReason, ...(await readRun(client, id)) }
        }
        if (Date.now() > deadline) throw new Error(`job ${id} still ${state} after ${timeoutMs} ms`)
        await new Promise((r) => setTimeout(r, 50))
      }
    },
    async rows() {
      const db = await lancedb.connect(lancedbUri)
      if (!(await db.tableNames()).includes(CHUNKS_TABLE)) return []
      const table = await db.openTable(CHUNKS_TABLE)
      const all = (await table.query().toArray()).map((row) => {
        const plain = { ...row } as Record<string, unknown>
        if (plain.vector) plain.vector = Array.from(plain.vector as Iterable<number>)
        if (plain.labels) plain.labels = Array.from(plain.labels as Iterable<string>)
        return plain
      })
      table.close()
      db.close()
      return all.sort((a, b) => String(a.chunk_id).localeCompare(String(b.chunk_id)))
    },
  }
}

/** The settings an api needs to manage the rig's sources (its Redis, index and stand-in host). */
export const rigApiEnv = (rig: Rig): Env => ({
  REDIS_URL: rig.redis.url,
  CONFLUENCE_ALLOWED_HOSTS: '127.0.0.1',
  LANCEDB_URI: rig.lancedbUri,
})

/** Registers the rig's stand-in space through the api, as an operator would; its source id. */
export async function registerRigSource(
  t: Test,
  app: FastifyInstance,
  rig: Rig,
  headers: Record<string, string>,
): Promise<string> {
  const created = await app.inject({
    method: 'POST',
    url: '/api/sources',
    headers,
    payload: { name: 'Stand-in', kind: 'cloud', base_url: rig.confluence.baseUrl, spaces: ['ENG'] },
  })
  t.equal(created.statusCode, 201, created.body)
  return created.json().id as string
}

/** A second embedding model beside the defaults, for model-change tests: `EMBED_MODEL=` this. */
export const SECOND_EMBED_MODEL = 'mxbai-embed-large'

/** The stand-in's default models plus SECOND_EMBED_MODEL (each test gets its own copies). */
export const withSecondEmbedModel = () => [
  ...DEFAULT_MODELS.map((m) => ({ ...m })),
  {
    ...(DEFAULT_MODELS[1] as (typeof DEFAULT_MODELS)[number]),
    name: `${SECOND_EMBED_MODEL}:latest`,
  },
]

/** A rig with its worker running and the api listening on it, both keys configured; its URL. */
export async function rigWithApi(t: T, pages: StandInPage[]): Promise<{ rig: Rig; url: string }> {
  const rig = await ingestRig(t, { pages })
  await rig.startWorker()
  const { url } = await listenTestApp(t, {
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    ...rigApiEnv(rig),
    EXPORTS_DIR: rig.config.EXPORTS_DIR,
  })
  return { rig, url }
}

/** One source's rows, its id replaced, so two sources of the same space compare. */
export const sourceRows = (rows: Array<Record<string, unknown>>, source: string) =>
  rows
    .filter((r) => r.source_id === source)
    .map((r) => ({ ...r, source_id: 'SRC', chunk_id: String(r.chunk_id).replace(source, 'SRC') }))

let scratches = 0

/** Syncs a new source of the rig's space (or `input`'s scope) from scratch; its id. */
export async function syncFromScratch(
  t: Test,
  rig: Rig,
  input: Parameters<Rig['register']>[0] = {},
): Promise<string> {
  const id = await rig.register({ name: `From scratch ${++scratches}`, ...input })
  const run = await rig.waitFor(await rig.enqueue(id))
  t.equal(run.state, 'completed', run.failedReason ?? '')
  return id
}

/** The index holds the same rows for `source` as for `scratch`, a from-scratch sync of it. */
export async function sameAsFromScratch(t: Test, rig: Rig, source: string, scratch: string) {
  const rows = await rig.rows()
  t.ok(sourceRows(rows, source).length > 0)
  t.same(
    sourceRows(rows, source),
    sourceRows(rows, scratch),
    'chunk ids, texts, metadata and vectors of a from-scratch sync',
  )
}

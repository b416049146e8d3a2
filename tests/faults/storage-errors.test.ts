import { JobName, QUEUE_PREFIX, QueueName, syncJobOptions } from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import { pino } from 'pino'
import t from 'tap'
import {
  isUnwritable,
  MIN_FREE_BYTES,
  type StorageFs,
  storageFault,
  storageProblem,
  writeError,
} from '../../services/worker/src/store/storage.ts'
import { startWorker } from '../../services/worker/src/worker.ts'
import { generatedSpace, ingestRig } from '../helpers/ingest.ts'

// The index's storage refusing writes, without a file system that does (lancedb-storage.test.ts
// mounts real ones where it may): LanceDB's errors named, the check readiness makes, and a sync
// whose writes are refused failing with the reason, its retry crawling and writing again.

const LANCE_EROFS =
  'lance error: LanceError(IO): Read-only file system (os error 30) at path "/db/chunks.lance/data/.tmpX", object_store.rs:800:21'

t.test('storage errors are named; other errors are left as they are', async (t) => {
  t.equal(storageProblem(new Error(LANCE_EROFS)), 'read-only file system')
  t.equal(storageProblem('No space left on device (os error 28)'), 'no space left on device')
  t.equal(storageProblem(new Error('Commit conflict')), undefined)
  const named = writeError(new Error(LANCE_EROFS), '/var/lib/db') as Error
  t.equal(named.name, 'UnrecoverableError')
  t.equal(
    named.message,
    'The index at LANCEDB_URI=/var/lib/db cannot be written: read-only file system',
  )
  t.ok(isUnwritable(named.message))
  const other = new Error('Commit conflict')
  t.equal(writeError(other, '/db'), other)
  t.notOk(isUnwritable(other.message))
})

t.test(
  'the readiness check: writable, read-only, full, not yet created, object storage',
  async (t) => {
    const calls: string[] = []
    const fake = (options: {
      exists?: string[]
      readOnly?: boolean
      free?: number
    }): StorageFs => ({
      access: (async (path: string, mode?: number) => {
        calls.push(`${path}:${mode ?? 0}`)
        if (options.exists !== undefined && !options.exists.includes(path)) {
          throw new Error(`ENOENT: no such file or directory, access '${path}'`)
        }
        if (mode !== undefined && options.readOnly) {
          throw new Error(`EROFS: read-only file system, access '${path}'`)
        }
      }) as StorageFs['access'],
      statfs: (async () => ({
        bavail: (options.free ?? 10 * MIN_FREE_BYTES) / 4096,
        bsize: 4096,
      })) as unknown as StorageFs['statfs'],
    })
    t.equal(await storageFault('/data/db', fake({})), undefined)
    t.equal(
      await storageFault('/data/db', fake({ readOnly: true })),
      "/data/db: EROFS: read-only file system, access '/data/db'",
    )
    t.equal(
      await storageFault('/data/db', fake({ free: 8192 })),
      '/data/db: no space left on device (8 KiB free)',
    )
    calls.length = 0
    t.equal(await storageFault('/data/new/db', fake({ exists: ['/data'] })), undefined)
    t.same(
      calls,
      ['/data/new/db:0', '/data/new:0', '/data:0', `/data:${2}`],
      'its parent is checked',
    )
    t.equal(await storageFault('s3://bucket/prefix', fake({ readOnly: true })), undefined)
    t.equal(await storageFault(t.testdirName), undefined, 'the real file system here is writable')
  },
)

t.test('a worker whose index is unwritable is not ready, and says why', async (t) => {
  const rig = await ingestRig(t, { pages: [] })
  // Readiness asks about the storage through its checks: this one names a read-only file system.
  const worker = await startWorker(
    rig.config,
    pino({ level: 'silent' }),
    {},
    {
      storageFault: async () => '/db: EROFS: read-only file system',
    },
  )
  t.teardown(() => worker.close())
  await worker.ready()
  const res = await fetch(`http://127.0.0.1:${worker.healthPort}/health/ready`)
  t.equal(res.status, 503)
  t.match(await res.json(), {
    status: 'down',
    redis: { status: 'ok' },
    storage: { status: 'down', error: '/db: EROFS: read-only file system' },
  })
})

t.test('a sync whose writes are refused fails saying why; its retry writes', async (t) => {
  const rig = await ingestRig(t, { pages: generatedSpace(6), env: { SYNC_BATCH_PAGES: '2' } })
  const { ingest } = await rig.startWorker()
  const source = await rig.register()
  t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')

  const store = ingest.ingest.store
  const replace = store.replacePages.bind(store)
  let refusals = 0
  store.replacePages = async (...args) => {
    if (refusals++ < 3) throw new Error(LANCE_EROFS)
    return replace(...args)
  }
  for (const page of rig.confluence.options.pages) {
    page.version++
    page.storage += '<p>Changed.</p>'
  }
  const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  const job = await queue.add(
    JobName.sync,
    { source_id: source },
    { ...syncJobOptions(source), attempts: 2, backoff: { type: 'fixed', delay: 50 } },
  )
  const run = await rig.waitFor(job.id as string, 60_000)
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.equal(run.progress.converted, 6, 'the retry crawled and wrote every page again')
  t.equal(run.progress.failed, 0)
  const done = await queue.getJob(job.id as string)
  t.equal(done?.attemptsMade, 2)
  t.match(
    done?.stacktrace?.[0],
    /^Error: The index at LANCEDB_URI=\S+ cannot be written: read-only file system/,
    'the first attempt failed naming the problem',
  )
  const rows = await rig.rows()
  t.equal(new Set(rows.map((r) => r.version)).size, 1, 'every page at its new version')
})

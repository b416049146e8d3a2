import { QUEUE_PREFIX, QueueName, readRun } from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t from 'tap'
import { generatedSpace, ingestRig } from '../helpers/ingest.ts'
import { waitUntil, workerProcess } from './faults.ts'

// Issue 13, fault 1, the case random kill points rarely hit: the worker dying more than once
// during the same step of one sync (two rollouts or OOM kills during a long crawl).

t.test('a sync whose worker dies twice during its crawl still completes', async (t) => {
  // BullMQ fails a job found stalled (its worker gone) more than maxStalledCount times: with
  // its default a second death during the same step lost the accepted sync ("job stalled more
  // than allowable limit"), retries and all.
  const rig = await ingestRig(t, {
    pages: generatedSpace(6),
    // Slow answers: the crawl's listing takes seconds, so each kill lands in it.
    confluence: { delayMs: 800 },
    env: { SYNC_BATCH_PAGES: '10', WORKER_LOCK_MS: '1000' },
  })
  const source = await rig.register()
  const job = await rig.enqueue(source)
  const t0 = performance.now()
  const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  // Two deaths are one more than BullMQ's default allowed.
  for (let kill = 1; kill <= 2; kill++) {
    const worker = workerProcess(t, rig)
    await worker.waitFor(/worker started/, 30_000)
    // Killed once it runs the sync (its stalled run found and taken again after a death).
    await waitUntil(`worker ${kill} running the sync`, async () => {
      const sync = await queue.getJob(job)
      return (
        (await sync?.getState()) === 'active' &&
        sync?.processedBy?.endsWith(`:${worker.child.pid}`) === true
      )
    })
    // …and lists the space: past the writer lock its crawl takes first (a worker killed holding
    // it holds every write back for the lock's 30 s TTL, a wait this test is not about).
    const asked = rig.confluence.requests.length
    await waitUntil('a listing request', () => rig.confluence.requests.length > asked)
    t.equal((await readRun(rig.client, job)).progress.converted, 0, `kill ${kill}: in the crawl`)
    t.comment(`kill ${kill} at ${Math.round(performance.now() - t0)} ms`)
    worker.child.kill('SIGKILL')
    await worker.exit
  }
  const last = workerProcess(t, rig)
  await last.waitFor(/worker started/, 30_000)
  t.comment(`last worker started at ${Math.round(performance.now() - t0)} ms`)
  const run = await rig.waitFor(job, 60_000)
  t.comment(`done at ${Math.round(performance.now() - t0)} ms`)
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.equal(run.progress.converted, 6)
  last.child.kill('SIGTERM')
  await last.exit
})

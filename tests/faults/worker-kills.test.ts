import { QUEUE_PREFIX, QueueName, readRun } from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t from 'tap'
import { generatedSpace, ingestRig, sameAsFromScratch, syncFromScratch } from '../helpers/ingest.ts'
import { LONG, seeded, waitUntil, workerProcess } from './faults.ts'

// Issue 13, fault 1: the worker process SIGKILLed at random points of a sync (while it lists,
// converts, embeds or writes; the points come from a printed seed), a new one started each time.
// The sync still completes and the index equals an uninterrupted sync's, chunk for chunk:
// nothing lost, nothing doubled, no half-written page. FAULTS_LONG=1: 500 pages, 5 kills.

const PAGES = LONG ? 500 : 60
const KILLS = LONG ? 5 : 2

t.test(`a ${PAGES}-page sync survives ${KILLS} SIGKILLs of its worker`, async (t) => {
  const random = seeded(t, 'kill points')
  const rig = await ingestRig(t, {
    pages: generatedSpace(PAGES),
    confluence: { delayMs: LONG ? 5 : 15 },
    env: { SYNC_BATCH_PAGES: '3', WORKER_LOCK_MS: '1000' },
  })
  const source = await rig.register()
  const job = await rig.enqueue(source)
  const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  const finished = async () => ['completed', 'failed'].includes(await queue.getJobState(job))

  for (let kill = 1; kill <= KILLS; kill++) {
    const worker = workerProcess(t, rig)
    await worker.waitFor(/worker started/, 30_000)
    // A point between where the last worker got to and most of the pages written.
    const before = (await readRun(rig.client, job)).progress.converted
    const target = before + Math.floor(random() * Math.max(0, PAGES - before) * 0.8)
    const jitterMs = Math.floor(random() * 150)
    await waitUntil(
      `${target} pages converted`,
      async () => (await readRun(rig.client, job)).progress.converted >= target || finished(),
      120_000,
    )
    await new Promise((r) => setTimeout(r, jitterMs))
    const { progress } = await readRun(rig.client, job)
    worker.child.kill('SIGKILL')
    const exit = await worker.exit
    t.equal(exit.signal, 'SIGKILL')
    t.comment(`kill ${kill}: ${target} pages + ${jitterMs} ms, converted=${progress.converted}`)
    if (await finished()) break
  }

  const last = workerProcess(t, rig)
  await last.waitFor(/worker started/, 30_000)
  const run = await rig.waitFor(job, LONG ? 600_000 : 120_000)
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.equal(run.progress.failed, 0, 'no page failed')
  const rows = (await rig.rows()).filter((r) => r.source_id === source)
  t.equal(new Set(rows.map((r) => r.chunk_id)).size, rows.length, 'no chunk doubled')
  t.equal(new Set(rows.map((r) => r.page_id)).size, PAGES, 'every page indexed')
  const scratch = await syncFromScratch(t, rig)
  await sameAsFromScratch(t, rig, source, scratch)
  last.child.kill('SIGTERM')
  t.equal((await last.exit).code, 0, 'the last worker stops cleanly')
})

import { JobName, listSources, QUEUE_PREFIX, QueueName, syncLockKey } from '@confluence-bot/shared'
import { type Job, Queue } from 'bullmq'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import type { Ingest } from '../../../services/worker/src/ingest/context.ts'
import { createMaintainProcessor } from '../../../services/worker/src/processors/maintain.ts'
import { generatedSpace, ingestRig, type Rig } from '../../helpers/ingest.ts'

// Rows a sync writes are folded into the indices while it runs, once an indexed table has
// INDEX_FOLD_ROWS of them (queries scan every row the indices do not cover); a first sync
// builds the indices once, at its end. Real Redis, worker, BullMQ and LanceDB.

const FOLD_ROWS = 20
// Each embed call waits a little, so a sync's batches outlast a fold's wait for the lock.
const rigOf = (t: Test, pages = 60) =>
  ingestRig(t, {
    pages: generatedSpace(pages),
    ollama: { firstByteDelayMs: 100 },
    env: { INDEX_FOLD_ROWS: String(FOLD_ROWS), SYNC_BATCH_PAGES: '5', WORKER_CONCURRENCY: '2' },
  })

type MaintainResult = { rows: number; indices: string[]; passes: number }

/** Maintain jobs, oldest first, once none waits or runs. */
async function maintainJobs(rig: Rig): Promise<Job[]> {
  const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  try {
    const deadline = Date.now() + 60_000
    for (;;) {
      const busy = (await queue.getJobs(['waiting', 'active', 'delayed', 'prioritized'])).filter(
        (job) => job?.name === JobName.maintain,
      )
      if (busy.length === 0) break
      if (Date.now() > deadline) throw new Error('maintain jobs still queued after 60 s')
      await new Promise((r) => setTimeout(r, 50))
    }
    const done = (await queue.getJobs(['completed', 'failed'])).filter(
      (job) => job?.name === JobName.maintain,
    )
    return done.sort((a, b) => (a.processedOn as number) - (b.processedOn as number))
  } finally {
    await queue.close()
  }
}

const resultOf = (job: Job) => job.returnvalue as MaintainResult

t.test(
  'a sync of an indexed table folds its rows in while it runs; a first sync does not',
  async (t) => {
    const rig = await rigOf(t)
    const { ingest } = await rig.startWorker()
    const store = ingest.ingest.store
    t.equal(await store.unindexedRows(), null, 'no table yet: nothing to fold')

    const first = await rig.register()
    const run = await rig.waitFor(await rig.enqueue(first))
    t.equal(run.state, 'completed', run.failedReason ?? '')
    const written = await store.countRows()
    t.ok(written > 2 * FOLD_ROWS, `the first sync wrote ${written} rows, several folds' worth`)
    const upkeep = await maintainJobs(rig)
    t.equal(upkeep.length, 1, 'one maintain job: the one the finish step queued')
    t.match(resultOf(upkeep[0] as Job), {
      rows: written,
      passes: 1,
      indices: ['source_id_idx', 'space_idx', 'text_idx'],
    })
    t.equal(await store.unindexedRows(), 0, 'the indices cover every row')

    // The same space under a second source: every row is new to an indexed table.
    const second = await rig.register({ name: 'Second' })
    const syncId = await rig.enqueue(second)
    const resync = await rig.waitFor(syncId)
    t.equal(resync.state, 'completed', resync.failedReason ?? '')
    const total = await store.countRows()
    t.equal(total, 2 * written)
    const folds = (await maintainJobs(rig)).slice(1)
    const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
    t.teardown(() => queue.close())
    const finishedOn = (await queue.getJob(syncId))?.finishedOn as number
    // It counted the rows under the writer lock: fewer than the sync wrote, so it began (and folded
    // what it counted) before the sync's last write.
    const midway = folds.filter((job) => {
      const { rows } = resultOf(job)
      return rows > written && rows < total && (job.processedOn as number) < finishedOn
    })
    t.ok(midway.length > 0, 'a fold ran over part of the sync, before it finished')
    t.equal(resultOf(folds.at(-1) as Job).rows, total, 'the last fold saw every row')
    t.equal(await store.unindexedRows(), 0, 'the indices cover every row once it is done')
  },
)

t.test('a resync writing fewer rows than INDEX_FOLD_ROWS leaves them to its finish', async (t) => {
  const rig = await rigOf(t, 4)
  const { ingest } = await rig.startWorker()
  const first = await rig.register()
  t.equal((await rig.waitFor(await rig.enqueue(first))).state, 'completed')
  await maintainJobs(rig)
  const second = await rig.register({ name: 'Second' })
  t.equal((await rig.waitFor(await rig.enqueue(second))).state, 'completed')
  const written = await ingest.ingest.store.countRows()
  t.ok(written / 2 < FOLD_ROWS, `each sync wrote ${written / 2} rows`)
  const upkeep = await maintainJobs(rig)
  t.same(
    upkeep.map((job) => resultOf(job).rows),
    [written / 2, written],
    'one maintain per sync, each at its finish',
  )
})

t.test('a fold that rows were written during folds again unless a sync will ask', async (t) => {
  const rig = await rigOf(t, 10)
  const { ingest } = await rig.startWorker()
  const real = ingest.ingest.store
  const log = pino({ level: 'silent' })
  const source = await rig.register()
  t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')
  await maintainJobs(rig)

  // A write lands while the fold runs, as a sync's last batch would (its finish step's request
  // for upkeep is dropped while this job runs).
  const stored = await real.pageChunks(source, ['1001'])
  let writes = 0
  const writing = {
    ...real,
    async maintain(options?: { force?: boolean }) {
      const report = await real.maintain(options)
      writes++
      const rows = stored.map((row) => ({ ...row, text: `${row.text} (edit ${writes})` }))
      await real.replacePages(
        source,
        ['1001'],
        rows.map((row) => ({ ...row, vector: null })),
      )
      return report
    },
  }
  const processor = createMaintainProcessor({ ...ingest.ingest, store: writing } as Ingest)
  const again = (await processor({} as Job, { log } as never)) as MaintainResult
  t.equal(again.passes, 2, 'no sync under way: the rows written meanwhile are folded now')

  // The same with the source's sync under way: its finish step asks for upkeep itself.
  t.equal((await listSources(rig.client)).length, 1)
  await rig.client.set(syncLockKey(source), 'sync-under-way')
  const left = (await processor({} as Job, { log } as never)) as MaintainResult
  t.equal(left.passes, 1, 'left to the sync under way')
  t.ok(((await real.unindexedRows()) as number) > 0, 'its rows are still to fold')
})

t.test('a maintain of an empty index has nothing to fold', async (t) => {
  const rig = await rigOf(t, 1)
  const { ingest } = await rig.startWorker()
  const processor = createMaintainProcessor(ingest.ingest)
  const report = await processor({} as Job, { log: pino({ level: 'silent' }) } as never)
  t.match(report, { rows: 0, indices: [], passes: 1 })
})

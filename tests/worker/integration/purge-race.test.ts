import { ChunkColumn, JobName, QUEUE_PREFIX, QueueName, sqlString } from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { openChunkStore } from '../../../services/worker/src/store/chunks.ts'
import { ADMIN_KEY, bearer, buildTestApp, READER_KEY } from '../../helpers/api.ts'
import { generatedSpace, ingestRig, type Rig, rigApiEnv } from '../../helpers/ingest.ts'

// A source deleted (DELETE /api/sources/:id) while its sync is still writing: the batches in
// flight must not write for it once it is gone (checked under the writer lock, right before the
// commit), and its purge must not finish while rows can still land: whatever is left of the
// source once its sync is over is removed. The index ends with no row of the source, and the
// sync does not report a clean run.

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function setup(t: Test, env: Record<string, string> = {}) {
  // Slow bodies: several batches are fetching when the source is deleted.
  const rig = await ingestRig(t, {
    pages: generatedSpace(40),
    confluence: { delayMs: 250 },
    env: { SYNC_BATCH_PAGES: '4', ...env },
  })
  await rig.startWorker()
  const app = await buildTestApp(t, {
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    ...rigApiEnv(rig),
    EXPORTS_DIR: rig.config.EXPORTS_DIR,
  })
  const queues = {
    sync: new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX }),
    pages: new Queue(QueueName.pages, { connection: rig.client, prefix: QUEUE_PREFIX }),
  }
  t.teardown(() => Promise.all([queues.sync.close(), queues.pages.close()]))
  const source = await rig.register()
  const rowsOf = async (r: Rig) => (await r.rows()).filter((row) => row.source_id === source)
  /** DELETE /api/sources/:id as an operator sends it; the purge job's id. */
  const remove = async () => {
    const res = await app.inject({
      method: 'DELETE',
      url: `/api/sources/${source}`,
      headers: bearer(ADMIN_KEY),
    })
    t.equal(res.statusCode, 202, res.body)
    return res.json().job_id as string
  }
  return { rig, app, queues, source, rowsOf: () => rowsOf(rig), remove }
}

t.test('a source deleted mid-sync leaves no row behind', async (t) => {
  const { rig, app, queues, source, rowsOf, remove } = await setup(t)
  const sync = await rig.enqueue(source)
  // Some batches have written, others are still fetching their bodies.
  // (The first write creates the table: a read racing it may find it not loadable yet.)
  await until('a first batch written', async () => (await rowsOf().catch(() => [])).length > 0)
  t.ok(((await queues.pages.getJobCounts('active')).active ?? 0) > 0, 'batches are in flight')
  const purge = await remove()

  const run = await rig.waitFor(sync)
  const purged = await rig.waitFor(purge)
  t.equal(purged.state, 'completed', purged.failedReason ?? '')
  t.same(await rowsOf(), [], 'no row of the deleted source is left')

  // The batches that were in flight wrote nothing once the source was gone.
  const batches = await queues.pages.getJobs(['completed', 'failed'])
  t.ok(
    batches.some((j) => /deleted while the batch ran/.test(j.returnvalue?.skipped)),
    'a batch that was fetching when the source was deleted wrote nothing',
  )
  // The sync says what happened instead of a clean run.
  t.equal(run.state, 'failed', 'the sync of a deleted source does not report a clean run')
  t.match(run.failedReason, /deleted during the sync/)

  const again = await app.inject({
    method: 'DELETE',
    url: `/api/sources/${source}`,
    headers: bearer(ADMIN_KEY),
  })
  t.equal(again.statusCode, 404, 'the source is gone')
  t.equal(
    (await queues.sync.getJob(purge))?.name,
    JobName.purge,
    'the purge job is the one DELETE queued',
  )
})

t.test('a purge also removes rows that land after it ran', async (t) => {
  const { rig, queues, source, rowsOf, remove } = await setup(t)
  const sync = await rig.enqueue(source)
  // (The first write creates the table: a read racing it may find it not loadable yet.)
  await until('a first batch written', async () => (await rowsOf().catch(() => [])).length > 0)
  // The batches still to come take their time: the sync is in flight while rows land.
  rig.confluence.options.delayMs = 2_000
  const [row] = await rowsOf()
  const purge = await remove()
  // The purge ran once (its first delete), then a writer that did not see the deletion (an
  // older worker, or one that lost its lock mid-commit) lands rows of the source.
  await until('the first purge pass', async () =>
    ['delayed', 'completed'].includes(await queues.sync.getJobState(purge)),
  )
  const late = await openChunkStore({
    uri: rig.lancedbUri,
    redis: rig.client,
    log: pino({ level: 'silent' }),
    vectorIndexMinRows: 100_000,
  })
  t.teardown(() => late.close())
  const stale = { ...(row as Record<string, unknown>), vector: null, embed_model: '' } as never
  await late.replacePages(source, [String((row as { page_id: string }).page_id)], [stale])
  t.ok(
    (await late.countRows(`${ChunkColumn.sourceId} = ${sqlString(source)}`)) > 0,
    'a row landed after the first purge pass',
  )

  await rig.waitFor(sync)
  const purged = await rig.waitFor(purge)
  t.equal(purged.state, 'completed', purged.failedReason ?? '')
  t.same(await rowsOf(), [], 'what landed after the purge is gone too')
})

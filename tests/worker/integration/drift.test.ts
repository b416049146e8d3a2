import { JobName, syncJobOptions } from '@confluence-bot/shared'
import t from 'tap'
import { generatedSpace, ingestRig } from '../../helpers/ingest.ts'

// The index stays an exact copy of the space (issue 10): syncs interrupted between their steps,
// pages moved or renamed without new content, labels changed without a new version, and a new
// embedding model. Real Redis, real workers, real LanceDB; the stand-ins change between syncs.

const pageIds = (rows: Array<Record<string, unknown>>) =>
  [...new Set(rows.map((r) => String(r.page_id)))].sort()

t.test('a sync whose page batches could not be queued crawls again when retried', async (t) => {
  const pages = generatedSpace(7)
  const rig = await ingestRig(t, { pages })
  const { ingest } = await rig.startWorker()
  // Redis fails the batches' queueing once, after the crawl: the retry must not skip to the
  // finish step and report a sync that wrote nothing.
  const queue = ingest.ingest.queues.pages
  const addBulk = queue.addBulk.bind(queue)
  let failures = 1
  queue.addBulk = (async (jobs: Parameters<typeof addBulk>[0]) => {
    if (failures-- > 0) throw new Error('Connection is closed.')
    return addBulk(jobs)
  }) as typeof queue.addBulk
  const source = await rig.register()

  // Queued as the api queues it: with the contract's retries.
  const job = await ingest.ingest.queues.sync.add(
    JobName.sync,
    { source_id: source },
    syncJobOptions(source),
  )
  const run = await rig.waitFor(job.id as string)
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.equal(failures, -1, 'the first attempt failed to queue its batches')
  t.same(run.progress, {
    discovered: 7,
    converted: 7,
    embedded: 7,
    unchanged: 0,
    deleted: 0,
    failed: 0,
  })
  t.same(pageIds(await rig.rows()), pages.map((p) => p.id).sort(), 'every page written')
})

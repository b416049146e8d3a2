import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import {
  createSource,
  JobName,
  QUEUE_PREFIX,
  QueueName,
  syncJobOptions,
} from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t from 'tap'
import { buildExportZip } from '../../helpers/confluence-export.ts'
import type { StandInPage } from '../../helpers/confluence-stand-in.ts'
import {
  generatedSpace,
  ingestRig,
  type Rig,
  sameAsFromScratch,
  syncFromScratch,
  withSecondEmbedModel,
} from '../../helpers/ingest.ts'

// The index stays an exact copy of the space (issue 10): syncs interrupted between their steps,
// pages moved or renamed without new content, labels changed without a new version, and a new
// embedding model. Real Redis, real workers, real LanceDB; the stand-ins change between syncs.

const bodyRequests = (rig: Rig) =>
  rig.confluence.requests.filter((r) => r.query['body-format'] !== undefined)

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

t.test('a renamed parent restamps its subtree; a moved page its breadcrumb', async (t) => {
  // 1001 is the root; 1002–1006 its children; 1007–1011 under 1002; 1012 under 1003.
  const pages = generatedSpace(12)
  const rig = await ingestRig(t, { pages })
  await rig.startWorker()
  const source = await rig.register()
  t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')
  const page = (id: string) => pages.find((p) => p.id === id) as StandInPage
  const fetchedBefore = bodyRequests(rig).length

  // A rename makes a new version; a move does not.
  Object.assign(page('1002'), { title: 'Renamed section', version: 2 })
  page('1012').parentId = '1004'
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.same(run.progress, {
    discovered: 12,
    converted: 1,
    // the renamed page, its five children and the moved page: their breadcrumbs are embedded
    embedded: 7,
    unchanged: 11,
    deleted: 0,
    failed: 0,
  })
  const fetched = bodyRequests(rig).slice(fetchedBefore)
  t.same(
    fetched.map((r) => r.query.id ?? r.path),
    ['1002'],
    'only the renamed page is fetched again',
  )
  const rows = await rig.rows()
  const crumb = (id: string) =>
    String(rows.find((r) => r.source_id === source && r.page_id === id)?.breadcrumb)
  t.match(crumb('1007'), /^ENG › Page 1 of ENG › Renamed section › Page 7 of ENG/)
  t.match(crumb('1012'), /^ENG › Page 1 of ENG › Page 4 of ENG › Page 12 of ENG/)

  await sameAsFromScratch(t, rig, source, await syncFromScratch(t, rig))
  const again = await rig.waitFor(await rig.enqueue(source))
  t.match(again.progress, { converted: 0, embedded: 0, unchanged: 12 }, 'nothing left to do')
})

t.test('a move before any vector exists restamps the text columns alone', async (t) => {
  // No embedding model yet: the table has no vector column, so there is no vector to replace.
  const pages = generatedSpace(12)
  const rig = await ingestRig(t, { pages, ollama: { models: [] } })
  await rig.startWorker()
  const source = await rig.register()
  t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')
  ;(pages.find((p) => p.id === '1012') as StandInPage).parentId = '1004'
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.match(run.progress, { converted: 0, embedded: 0, unchanged: 12 })
  const moved = (await rig.rows()).find((r) => r.source_id === source && r.page_id === '1012')
  t.match(String(moved?.breadcrumb), /^ENG › Page 1 of ENG › Page 4 of ENG › Page 12 of ENG/)
  await sameAsFromScratch(t, rig, source, await syncFromScratch(t, rig))
})

t.test('a move while the model is away, or not pulled yet, restamps without vectors', async (t) => {
  const pages = generatedSpace(12)
  const rig = await ingestRig(t, { pages })
  const first = await rig.startWorker()
  const source = await rig.register()
  t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')
  const moved = () =>
    rig.rows().then((rows) => rows.filter((r) => r.source_id === source && r.page_id === '1012'))

  // The table's model does not answer: the moved page is restamped without vectors.
  rig.ollama.options.models = []
  ;(pages.find((p) => p.id === '1012') as StandInPage).parentId = '1004'
  const away = await rig.waitFor(await rig.enqueue(source))
  t.equal(away.state, 'completed', away.failedReason ?? '')
  t.match(away.progress, { converted: 0, embedded: 0 })
  t.ok(
    (await moved()).every((r) => r.vector === null),
    'no vector while the model is away',
  )
  t.match(String((await moved())[0]?.breadcrumb), /Page 4 of ENG › Page 12 of ENG/)

  // EMBED_MODEL changed to a model that cannot be reached: nothing of the old model is kept
  // for a page moved now either.
  await first.worker.close()
  await first.ingest.close()
  await rig.startWorker({ EMBED_MODEL: 'not-pulled-yet' })
  ;(pages.find((p) => p.id === '1012') as StandInPage).parentId = '1005'
  const changed = await rig.waitFor(await rig.enqueue(source))
  t.equal(changed.state, 'completed', changed.failedReason ?? '')
  t.ok((await moved()).every((r) => r.vector === null))
  t.match(String((await moved())[0]?.breadcrumb), /Page 5 of ENG › Page 12 of ENG/)
})

t.test('a renamed space restamps every page without converting one', async (t) => {
  const pages = generatedSpace(4)
  const rig = await ingestRig(t, { pages, confluence: { spaceNames: { ENG: 'Engineering' } } })
  await rig.startWorker()
  const source = await rig.register()
  t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')
  rig.confluence.options.spaceNames = { ENG: 'Platform Engineering' }
  const run = await rig.waitFor(await rig.enqueue(source))
  t.match(run.progress, { converted: 0, embedded: 4, unchanged: 4 })
  await sameAsFromScratch(t, rig, source, await syncFromScratch(t, rig))
})

t.test('a page moved in an HTML export with the same content is restamped', async (t) => {
  const pages = generatedSpace(8)
  const rig = await ingestRig(t, { pages })
  await rig.startWorker()
  await mkdir(rig.config.EXPORTS_DIR, { recursive: true })
  const zip = (path: string) =>
    buildExportZip(pages, {
      spaceKey: 'ENG',
      spaceName: 'Engineering',
      path: join(rig.config.EXPORTS_DIR, path),
    })
  const exportSource = async (path: string) =>
    (
      await createSource(rig.client, {
        name: path,
        kind: 'export',
        base_url: '',
        spaces: [],
        export_path: join(rig.config.EXPORTS_DIR, path),
      })
    ).id
  await zip('eng.zip')
  const source = await exportSource('eng.zip')
  t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')

  // 1008 sits under 1002; the new export has it under 1003, its page file unchanged.
  ;(pages[7] as StandInPage).parentId = '1003'
  await zip('eng.zip')
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.match(run.progress, { discovered: 8, converted: 0, embedded: 1, unchanged: 8 })

  await zip('scratch.zip')
  const scratch = await exportSource('scratch.zip')
  t.equal((await rig.waitFor(await rig.enqueue(scratch))).state, 'completed')
  await sameAsFromScratch(t, rig, source, scratch)
})

for (const deployment of ['cloud', 'dc'] as const) {
  t.test(`${deployment}: labels changed without a new version reach the index`, async (t) => {
    const pages = generatedSpace(6)
    ;(pages[1] as StandInPage).labels = ['old-label']
    const rig = await ingestRig(t, { pages, confluence: { deployment } })
    await rig.startWorker()
    const source = await rig.register()
    t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')
    const calls = rig.ollama.embedCalls

    ;(pages[1] as StandInPage).labels = []
    ;(pages[2] as StandInPage).labels = ['runbook', 'ops']
    // A page the search index has not caught up with still has its labels read.
    ;(pages[3] as StandInPage).labels = ['fresh']
    rig.confluence.options.unindexed = ['1004']
    const run = await rig.waitFor(await rig.enqueue(source))
    t.equal(run.state, 'completed', run.failedReason ?? '')
    t.same(run.progress, {
      discovered: 6,
      converted: 0,
      embedded: 0,
      unchanged: 6,
      deleted: 0,
      failed: 0,
    })
    t.equal(rig.ollama.embedCalls, calls, 'labels are not embedded: no embed call')
    const rows = await rig.rows()
    const labels = (id: string) => rows.find((r) => r.page_id === id)?.labels
    t.same(labels('1002'), [])
    t.same(labels('1003'), ['runbook', 'ops'])
    t.same(labels('1004'), ['fresh'])

    rig.confluence.options.unindexed = []
    await sameAsFromScratch(t, rig, source, await syncFromScratch(t, rig))
  })
}

t.test('embed and embed:latest are one model: nothing is embedded again', async (t) => {
  const pages = generatedSpace(4)
  const rig = await ingestRig(t, { pages })
  const first = await rig.startWorker()
  const source = await rig.register()
  t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')
  await first.worker.close()
  const rows = await rig.rows()
  const calls = rig.ollama.embedCalls

  await rig.startWorker({ EMBED_MODEL: 'registry.ollama.ai/library/Nomic-Embed-Text:latest' })
  const run = await rig.waitFor(await rig.enqueue(source))
  t.match(run.progress, { converted: 0, embedded: 0, unchanged: 4 })
  t.equal(rig.ollama.embedCalls, calls, 'no embed call')
  t.same(await rig.rows(), rows, 'the same rows, the same recorded model')
})

t.test('a new embedding model refills every source, not only the one syncing', async (t) => {
  const ops = generatedSpace(5, 'OPS').map((p) => ({
    ...p,
    id: String(Number(p.id) + 100),
    parentId: p.parentId === undefined ? undefined : String(Number(p.parentId) + 100),
  }))
  const pages = [...generatedSpace(5), ...ops]
  const rig = await ingestRig(t, { pages, ollama: { models: withSecondEmbedModel() } })
  const first = await rig.startWorker()
  const eng = await rig.register({ name: 'ENG', spaces: ['ENG'] })
  const opsSource = await rig.register({ name: 'OPS', spaces: ['OPS'] })
  for (const id of [eng, opsSource]) {
    t.equal((await rig.waitFor(await rig.enqueue(id))).state, 'completed')
  }
  await first.worker.close()

  await rig.startWorker({ EMBED_MODEL: 'mxbai-embed-large' })
  t.equal((await rig.waitFor(await rig.enqueue(eng))).state, 'completed')
  // The refill job the model change queued fills the other source too.
  const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  let refill: Awaited<ReturnType<typeof queue.getJobs>>[number] | undefined
  for (let i = 0; i < 600 && refill === undefined; i++) {
    refill = (await queue.getJobs(['completed'])).find((j) => j.name === JobName.refill)
    if (refill === undefined) await new Promise((r) => setTimeout(r, 50))
  }
  t.ok(refill, 'a refill job ran')
  t.match(refill?.progress, { remaining: 0 })
  t.match(refill?.returnvalue, { remaining: 0 })
  const opsRows = (await rig.rows()).filter((r) => r.source_id === opsSource)
  t.ok(refill !== undefined && refill.returnvalue.filled >= opsRows.length)
  t.ok(
    (await rig.rows()).every((r) => r.embed_model === 'mxbai-embed-large'),
    'every chunk of every source has a vector of the new model',
  )
  await sameAsFromScratch(t, rig, opsSource, await syncFromScratch(t, rig, { spaces: ['OPS'] }))
})

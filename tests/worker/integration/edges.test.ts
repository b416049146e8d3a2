import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  createSource,
  defaultJobOptions,
  getSource,
  JobName,
  loadWorkerConfig,
  QUEUE_PREFIX,
  QueueName,
  removeSource,
  syncSchedulerId,
} from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import { pino } from 'pino'
import t from 'tap'
import {
  loadCatalog,
  resolversOf,
  saveCatalog,
} from '../../../services/worker/src/ingest/catalog.ts'
import { defaultAuth } from '../../../services/worker/src/ingest/index.ts'
import { pageRows } from '../../../services/worker/src/ingest/rows.ts'
import { reconcileSchedulers } from '../../../services/worker/src/schedulers.ts'
import { generatedSpace, ingestRig } from '../../helpers/ingest.ts'

// The corners of a sync: a page that cannot be read or converted, a source that is gone, a
// sync that finds another one running, odd page trees, schedules reconciled at boot.

t.test('a page that cannot be read, or converted, is recorded and skipped', async (t) => {
  const pages = generatedSpace(6)
  const huge = pages[4] as (typeof pages)[number]
  huge.storage = `<p>${'x'.repeat(17 * 1024 * 1024)}</p>`
  const rig = await ingestRig(t, {
    pages,
    confluence: {
      faults: [
        { path: /\/api\/v2\/pages\?/, status: 400, times: 1 },
        { path: /\/api\/v2\/pages\/1003\b/, status: 404, times: 10 },
      ],
    },
  })
  await rig.startWorker()
  const source = await rig.register()
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.match(run.progress, { discovered: 6, converted: 4, failed: 2 })
  t.match(
    [...run.errors].sort((a, b) => String(a.page_id).localeCompare(String(b.page_id))),
    [
      { page_id: '1003', message: /not found or no permission/ },
      { page_id: huge.id, message: /conversion failed: page body is \d+ bytes/ },
    ],
  )
  const ids = new Set((await rig.rows()).map((r) => r.page_id))
  t.notOk(ids.has('1003'))
  t.equal(ids.size, 4)
})

t.test('a batch refused for good fails its pages, not the sync', async (t) => {
  const rig = await ingestRig(t, {
    pages: generatedSpace(6),
    confluence: {
      faults: [{ path: /\/api\/v2\/pages\?id=1001/, status: 401, body: '{"code":401}', times: 1 }],
    },
  })
  await rig.startWorker()
  const run = await rig.waitFor(await rig.enqueue(await rig.register()))
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.match(run.progress, { discovered: 6, converted: 1, failed: 5 })
  t.same(
    run.errors.map((e) => e.page_id),
    ['1001', '1002', '1003', '1004', '1005'],
  )
  t.match(run.errors[0]?.message, /401/)
})

t.test('a purge removes the rows and the uploaded zip of an export source', async (t) => {
  const rig = await ingestRig(t, { pages: generatedSpace(2) })
  await rig.startWorker()
  await mkdir(rig.config.EXPORTS_DIR, { recursive: true })
  const zip = join(rig.config.EXPORTS_DIR, 'src_00000000000a.zip')
  await writeFile(zip, 'zip')
  const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  const job = await queue.add(JobName.purge, {
    source_id: 'src_00000000000a',
    export_path: 'src_00000000000a.zip',
  })
  t.equal((await rig.waitFor(job.id as string)).state, 'completed')
  t.notOk(existsSync(zip), 'the zip is gone')
})

t.test('a sync of a source that is gone fails for good', async (t) => {
  const rig = await ingestRig(t, { pages: generatedSpace(2) })
  await rig.startWorker()
  const run = await rig.waitFor(await rig.enqueue('src_000000000000'))
  t.equal(run.state, 'failed')
  t.match(run.failedReason, /source src_000000000000 does not exist/)
})

t.test('page batches of a source deleted mid-sync are skipped', async (t) => {
  const rig = await ingestRig(t, {
    pages: generatedSpace(4),
    confluence: { delayMs: 150 },
    env: { SYNC_BATCH_PAGES: '1', WORKER_CONCURRENCY: '1' },
  })
  await rig.startWorker()
  const source = await rig.register()
  const job = await rig.enqueue(source)
  const pages = new Queue(QueueName.pages, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => pages.close())
  while ((await pages.getJobCounts('completed')).completed === 0) {
    await new Promise((r) => setTimeout(r, 10))
  }
  const spec = await getSource(rig.client, source)
  await removeSource(rig.client, spec as NonNullable<typeof spec>)
  const run = await rig.waitFor(job)
  t.equal(run.state, 'failed', 'the sync says its source went away')
  t.match(run.failedReason, /was deleted during the sync/)
  const results = (await pages.getJobs(['completed'])).map((j) => j.returnvalue)
  t.ok(
    results.some((r) => r?.skipped === 'the source was deleted'),
    'the batches after the deletion did nothing',
  )
})

t.test('a sync that finds another one of its source running steps aside', async (t) => {
  const rig = await ingestRig(t, { pages: generatedSpace(2) })
  const source = await rig.register()
  const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  // A sync waiting for its retry holds the claim; one that is gone does not.
  const held = await queue.add(JobName.sync, { source_id: source }, { delay: 60_000 })
  await rig.client.set(`cnfl:sync-lock:${source}`, held.id as string)
  await rig.startWorker()
  const skipped = await queue.add(JobName.sync, { source_id: source })
  await rig.waitFor(skipped.id as string)
  t.same((await queue.getJob(skipped.id as string))?.returnvalue, {
    skipped: 'a sync of this source is already running',
  })
  await held.remove()
  await rig.client.set(`cnfl:sync-lock:${source}`, 'sync-that-is-gone')
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'completed')
  t.equal(run.progress.converted, 2, 'a stale claim is taken over')
  t.equal(await rig.client.get(`cnfl:sync-lock:${source}`), null, 'released when done')
})

t.test('breadcrumbs survive a parent outside the scope and a parent loop', async (t) => {
  const pages = generatedSpace(4)
  ;(pages[0] as (typeof pages)[number]).parentId = '999'
  ;(pages[2] as (typeof pages)[number]).parentId = '1004'
  ;(pages[3] as (typeof pages)[number]).parentId = '1003'
  const rig = await ingestRig(t, { pages })
  await rig.startWorker()
  const run = await rig.waitFor(await rig.enqueue(await rig.register()))
  t.equal(run.state, 'completed')
  const crumbs = Object.fromEntries(
    (await rig.rows()).filter((r) => r.chunk_pos === 0).map((r) => [r.page_id, r.breadcrumb]),
  )
  t.match(crumbs['1001'], /^ENG › Page 1 of ENG › Section 0$/, 'a parent outside: no ancestors')
  t.match(crumbs['1003'], /^ENG › Page 4 of ENG › Page 3 of ENG › /, 'the loop is cut')
})

t.test('schedules are reconciled with the sources at boot', async (t) => {
  const rig = await ingestRig(t, { pages: generatedSpace(1) })
  const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  const kept = await createSource(rig.client, {
    name: 'hourly',
    kind: 'cloud',
    base_url: rig.confluence.baseUrl,
    spaces: ['ENG'],
    schedule: '0 * * * *',
  })
  await queue.upsertJobScheduler(syncSchedulerId('src_gone00000000'), { pattern: '0 0 * * *' })
  await reconcileSchedulers(rig.client, queue, pino({ level: 'silent' }))
  t.same(
    (await queue.getJobSchedulers()).map((s) => [s.key, s.pattern]),
    [[syncSchedulerId(kept.id), '0 * * * *']],
  )
})

t.test('default credentials come from CONFLUENCE_USERNAME / CONFLUENCE_TOKEN', async (t) => {
  const config = (env: Record<string, string>) => loadWorkerConfig({ LOG_LEVEL: 'silent', ...env })
  t.equal(defaultAuth(config({})), undefined)
  t.same(defaultAuth(config({ CONFLUENCE_TOKEN: 'pat' })), { type: 'bearer', token: 'pat' })
  t.same(defaultAuth(config({ CONFLUENCE_USERNAME: 'bot', CONFLUENCE_TOKEN: 'tok' })), {
    type: 'basic',
    username: 'bot',
    token: 'tok',
  })
})

t.test(
  'links and mentions resolve through what the crawl saw; an empty page keeps one row',
  async (t) => {
    const rig = await ingestRig(t, { pages: generatedSpace(1) })
    await saveCatalog(rig.client, 'src_a', [
      {
        id: '1',
        spaceKey: 'ENG',
        title: 'Runbook',
        version: '1',
        labels: [],
        url: 'https://wiki/x/1',
        author: { id: 'u-1', name: 'Ada Lovelace' },
      },
    ])
    const lookups = {}
    const resolvers = resolversOf(await loadCatalog(rig.client, 'src_a'), lookups)
    t.equal(resolvers.resolvePage({ title: 'Runbook' }, 'ENG'), 'https://wiki/x/1')
    t.equal(resolvers.resolvePage({ title: 'Runbook', spaceKey: 'OPS' }, 'ENG'), undefined)
    t.same(resolvers.resolveUser({ userKey: 'u-1' }), { displayName: 'Ada Lovelace' })
    t.equal(resolvers.resolveUser({ accountId: 'nobody' }), undefined)
    t.same(
      lookups,
      {
        't:ENG:Runbook': 'https://wiki/x/1',
        't:OPS:Runbook': null,
        'u:u-1': 'Ada Lovelace',
        'u:nobody': null,
      },
      'each field read, with what it held',
    )

    const { rows } = pageRows(
      {
        id: '7',
        spaceKey: 'ENG',
        title: 'Empty',
        version: '3',
        labels: ['x'],
        url: 'https://wiki/x/7',
        body: '<p> </p>',
        format: 'storage',
      },
      {
        sourceId: 'src_a',
        kind: 'datacenter',
        baseUrl: '',
        spaceName: 'Engineering',
        ancestors: ['Home'],
        resolvers,
      },
    )
    t.match(rows, [
      {
        chunk_id: 'src_a:7:0',
        text: 'Empty',
        breadcrumb: 'Engineering › Home › Empty',
        updated_at: '',
        labels: ['x'],
      },
    ])
  },
)

t.test(
  'jobs the worker queues itself carry the retries and retention of the contract',
  async (t) => {
    const rig = await ingestRig(t, { pages: generatedSpace(3) })
    const { ingest } = await rig.startWorker()
    const source = await createSource(rig.client, {
      name: 'scheduled',
      kind: 'cloud',
      base_url: rig.confluence.baseUrl,
      spaces: ['ENG'],
      schedule: '0 * * * *',
    })
    // The syncs of a schedule reconciled at boot, and the upkeep a finished sync asks for.
    await reconcileSchedulers(rig.client, ingest.ingest.queues.sync, pino({ level: 'silent' }))
    const scheduler = await ingest.ingest.queues.sync.getJobScheduler(syncSchedulerId(source.id))
    t.match(scheduler?.template?.opts, {
      attempts: defaultJobOptions.attempts,
      removeOnComplete: defaultJobOptions.removeOnComplete,
      removeOnFail: defaultJobOptions.removeOnFail,
    })
    const run = await rig.waitFor(await rig.enqueue(source.id))
    t.equal(run.state, 'completed', run.failedReason ?? '')
    const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
    t.teardown(() => queue.close())
    const upkeep = (
      await queue.getJobs(['waiting', 'active', 'completed', 'delayed', 'failed'])
    ).filter((job) => job?.name === JobName.maintain)
    t.ok(upkeep.length > 0, 'the sync asked for upkeep')
    for (const job of upkeep) {
      t.match(job.opts, {
        attempts: defaultJobOptions.attempts,
        removeOnComplete: defaultJobOptions.removeOnComplete,
      })
    }
  },
)

t.test('a batch whose only page cannot be converted writes nothing and counts it', async (t) => {
  const pages = generatedSpace(2)
  const huge = pages[1] as (typeof pages)[number]
  huge.storage = `<p>${'x'.repeat(17 * 1024 * 1024)}</p>`
  const rig = await ingestRig(t, { pages, env: { SYNC_BATCH_PAGES: '1' } })
  await rig.startWorker()
  const source = await rig.register()
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.match(run.progress, { discovered: 2, converted: 1, failed: 1 })
  t.same(
    [...new Set((await rig.rows()).map((row) => row.page_id))],
    [pages[0]?.id],
    'only the convertible page is in the index',
  )
  const batches = new Queue(QueueName.pages, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => batches.close())
  const results = (await batches.getJobs(['completed'])).map((job) => job.returnvalue)
  t.ok(
    results.some((r) => r?.converted === 0 && r?.failed === 1 && r?.writes === 0),
    'its batch made no write',
  )
})

t.test('a source deleted while a large batch converts: nothing of it is written', async (t) => {
  // The first page alone fills a write (over 4 MiB of storage), so the refusal comes mid-batch.
  const pages = generatedSpace(2)
  const big = pages[0] as (typeof pages)[number]
  big.storage = `<p>${'word '.repeat(1_000_000)}</p>`
  const rig = await ingestRig(t, {
    pages,
    confluence: { delayMs: 300 },
    env: { SYNC_BATCH_PAGES: '2' },
  })
  await rig.startWorker()
  const source = await rig.register()
  const job = await rig.enqueue(source)
  const batches = new Queue(QueueName.pages, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => batches.close())
  // The batch has asked for its bodies (so it is past its start, where a gone source is skipped
  // outright); the stand-in takes 300 ms to answer: the source goes in between.
  while (!rig.confluence.requests.some((r) => r.query['body-format'] !== undefined)) {
    await new Promise((r) => setTimeout(r, 5))
  }
  const spec = await getSource(rig.client, source)
  await removeSource(rig.client, spec as NonNullable<typeof spec>)
  const run = await rig.waitFor(job)
  t.equal(run.state, 'failed')
  t.same(await rig.rows().catch(() => []), [], 'nothing was written')
})

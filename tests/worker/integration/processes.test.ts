import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { createSource, QUEUE_PREFIX, QueueName, workerProcessEnv } from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t, { type Test } from 'tap'
import { buildExportZip } from '../../helpers/confluence-export.ts'
import { generatedSpace, ingestRig, type Rig } from '../../helpers/ingest.ts'
import { runService } from '../../helpers/process.ts'

// Ingestion across processes: a worker killed mid-sync, two workers at once, and the same
// space from an export zip. "The same rows" is checked against a full re-sync (every page
// fetched, converted and embedded again from scratch) of the same source.

type T = Test

function workerProcess(t: T, rig: Rig, env: Record<string, string> = {}) {
  // With the process environment the image and `pnpm start` give a worker.
  return runService(
    t,
    'services/worker/src/main.ts',
    workerProcessEnv({ ...rig.env, LOG_LEVEL: 'info', WORKER_CONCURRENCY: '1', ...env }),
  )
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 25))
  }
}

/** The rows of a from-scratch full sync, to compare an interrupted run with. */
async function fromScratch(t: T, rig: Rig, source: string) {
  await rig.startWorker()
  const run = await rig.waitFor(await rig.enqueue(source, { full: true }))
  t.equal(run.state, 'completed')
  return rig.rows()
}

t.test(
  'a worker killed mid-sync, then a new one: the same rows, none lost or doubled',
  async (t) => {
    const pages = generatedSpace(40)
    const rig = await ingestRig(t, {
      pages,
      confluence: { delayMs: 40 },
      env: { SYNC_BATCH_PAGES: '2', WORKER_LOCK_MS: '1500' },
    })
    const source = await rig.register()
    const first = workerProcess(t, rig)
    await first.waitFor(/worker started/)
    const job = await rig.enqueue(source)
    // (The table may be half-created when first looked at: then it has no rows yet.)
    await waitUntil(async () => (await rig.rows().catch(() => [])).length > 0)
    first.child.kill('SIGKILL')
    await first.exit
    const partial = new Set((await rig.rows()).map((r) => r.page_id)).size
    t.ok(partial > 0 && partial < 40, `killed with ${partial} of 40 pages written`)

    const second = workerProcess(t, rig)
    await second.waitFor(/worker started/)
    const run = await rig.waitFor(job, 90_000)
    t.equal(run.state, 'completed', run.failedReason ?? '')
    t.equal(run.progress.failed, 0)
    const rows = await rig.rows()
    t.equal(new Set(rows.map((r) => r.chunk_id)).size, rows.length, 'no duplicate chunk')
    t.equal(new Set(rows.map((r) => r.page_id)).size, 40, 'every page')
    second.child.kill('SIGTERM')
    await second.exit
    t.same(await fromScratch(t, rig, source), rows, 'the same rows as a sync from scratch')
  },
)

t.test('two worker processes share one sync and write the same rows', async (t) => {
  const pages = generatedSpace(40)
  const rig = await ingestRig(t, {
    pages,
    confluence: { delayMs: 20 },
    env: { SYNC_BATCH_PAGES: '2' },
  })
  const source = await rig.register()
  const workers = [workerProcess(t, rig), workerProcess(t, rig)]
  await Promise.all(workers.map((w) => w.waitFor(/worker started/)))
  const run = await rig.waitFor(await rig.enqueue(source), 90_000)
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.equal(run.progress.converted, 40)
  const rows = await rig.rows()
  t.equal(new Set(rows.map((r) => r.chunk_id)).size, rows.length, 'no duplicate chunk')

  const queue = new Queue(QueueName.pages, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  const batches = await queue.getJobs(['completed'])
  t.equal(batches.length, 20)
  t.equal(new Set(batches.map((b) => b.processedBy)).size, 2, 'both workers took batches')
  for (const w of workers) w.child.kill('SIGTERM')
  await Promise.all(workers.map((w) => w.exit))
  t.same(await fromScratch(t, rig, source), rows, 'the same rows as one worker from scratch')
})

t.test('an export zip ingests like the same space over REST', async (t) => {
  const pages = generatedSpace(15)
  const rig = await ingestRig(t, { pages, confluence: { spaceNames: { ENG: 'Engineering' } } })
  await rig.startWorker()
  const rest = await rig.register()
  t.equal((await rig.waitFor(await rig.enqueue(rest))).state, 'completed')

  await mkdir(rig.config.EXPORTS_DIR, { recursive: true })
  const zip = await buildExportZip(pages, {
    spaceKey: 'ENG',
    spaceName: 'Engineering',
    path: join(rig.config.EXPORTS_DIR, 'eng.zip'),
    topFolder: true,
  })
  const spec = await createSource(rig.client, {
    name: 'Export',
    kind: 'export',
    base_url: '',
    spaces: [],
    export_path: zip.path,
  })
  const run = await rig.waitFor(await rig.enqueue(spec.id))
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.equal(run.progress.converted, 15)

  const rows = await rig.rows()
  const of = (id: string) => rows.filter((r) => r.source_id === id)
  const shape = (r: Record<string, unknown>) => ({
    page_id: r.page_id,
    chunk_pos: r.chunk_pos,
    title: r.title,
    breadcrumb: r.breadcrumb,
    heading_path: r.heading_path,
    text: r.text,
  })
  t.same(of(spec.id).map(shape), of(rest).map(shape), 'same pages, chunks, breadcrumbs and text')
  t.ok(of(spec.id).every((r) => String(r.url).startsWith('export://ENG/')))

  const again = await rig.waitFor(await rig.enqueue(spec.id))
  t.equal(again.progress.unchanged, 15, 'an unchanged export costs nothing on the next sync')
})

t.test('a second sync of a source while one waits is deduplicated', async (t) => {
  const rig = await ingestRig(t, { pages: generatedSpace(3) })
  const source = await rig.register()
  const first = await rig.enqueue(source)
  const second = await rig.enqueue(source)
  t.equal(second, first, 'the waiting sync is returned')
  await rig.startWorker()
  t.equal((await rig.waitFor(first)).state, 'completed')
  const third = await rig.enqueue(source)
  t.not(third, first, 'a finished sync does not block the next')
  t.equal((await rig.waitFor(third)).state, 'completed')
})

import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { getSource, JobName, QUEUE_PREFIX, QueueName, readRun } from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { ADMIN_KEY, bearer, tempDir } from '../helpers/api.ts'
import { buildExportZip } from '../helpers/confluence-export.ts'
import type { StandInPage } from '../helpers/confluence-stand-in.ts'
import { generatedSpace, rigWithApi } from '../helpers/ingest.ts'

// Job data is checked by the worker whoever queued it: here a job forged through the queue
// dashboard's own add-job route (over real HTTP, as an admin's browser would send it) reaches a
// real worker, which fails it for good with the bad field named instead of acting on it. The
// dashboard's retry of a finished job is driven the same way.

async function setup(t: Test, pages: StandInPage[] = generatedSpace(1)) {
  const { rig, url } = await rigWithApi(t, pages)
  const queues = new Map(
    [QueueName.sync, QueueName.pages].map((name) => {
      const queue = new Queue(name, { connection: rig.client, prefix: QUEUE_PREFIX })
      t.teardown(() => queue.close())
      return [name as string, queue]
    }),
  )
  /** POSTs to bull-board's add-job route of a queue; the id of the job it queued. */
  const addJob = async (queueName: string, body: unknown) => {
    const res = await request(`${url}/admin/queues/api/queues/${queueName}/add`, {
      method: 'POST',
      headers: { ...bearer(ADMIN_KEY), 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    })
    const answer = (await res.body.json()) as { job?: { id: string } }
    t.equal(res.statusCode, 200, 'the dashboard queued the job')
    return answer.job?.id as string
  }
  /** PUTs to bull-board's retry route of a finished job (it answers 204). */
  const retryJob = async (queueName: string, id: string) => {
    const res = await request(`${url}/admin/queues/api/queues/${queueName}/${id}/retry`, {
      method: 'PUT',
      headers: bearer(ADMIN_KEY),
      signal: AbortSignal.timeout(10_000),
    })
    await res.body.dump()
    t.equal(res.statusCode, 204, `the dashboard retried ${id}`)
  }
  /** Waits until a job has finished; the job as it ended. */
  const settled = async (queueName: string, id: string) => {
    const queue = queues.get(queueName) as Queue
    const deadline = Date.now() + 30_000
    for (;;) {
      const state = await queue.getJobState(id)
      if (state === 'completed' || state === 'failed') {
        const job = await queue.getJob(id)
        return {
          state,
          failedReason: job?.failedReason,
          attemptsMade: job?.attemptsMade,
          data: job?.data,
        }
      }
      if (Date.now() > deadline) throw new Error(`job ${id} still ${state}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  return { rig, url, queues, addJob, retryJob, settled }
}

t.test('a forged purge job cannot delete a file outside EXPORTS_DIR', async (t) => {
  const { rig, addJob, settled } = await setup(t)
  const exports = rig.config.EXPORTS_DIR
  await mkdir(exports, { recursive: true })
  const victim = join(dirname(exports), 'victim.txt')
  await writeFile(victim, 'keep me')

  const id = await addJob(QueueName.sync, {
    name: JobName.purge,
    data: { source_id: 'src_000000000000', export_path: '../victim.txt' },
    options: { attempts: 3 },
  })
  const run = await settled(QueueName.sync, id)
  t.equal(run.state, 'failed')
  t.match(run.failedReason, /purge job data is invalid: export_path must match pattern/)
  t.ok(existsSync(victim), 'the file outside EXPORTS_DIR survives')
  t.equal(run.attemptsMade, 1, 'invalid data is not retried')
})

t.test('every job of the contract checks its data, on both queues', async (t) => {
  const { addJob, settled } = await setup(t)
  const cases: Array<[string, string, unknown, RegExp]> = [
    [QueueName.sync, JobName.sync, { source_id: '../../x' }, /sync job data is invalid: source_id/],
    [QueueName.sync, JobName.sync, {}, /sync job data is invalid: source_id is required/],
    [
      QueueName.sync,
      JobName.sync,
      { source_id: 'src_000000000000', full: 'yes' },
      /sync job data is invalid: full must be boolean/,
    ],
    [QueueName.sync, JobName.maintain, { x: 1 }, /maintain job data is invalid: x is not allowed/],
    [
      QueueName.sync,
      JobName.purge,
      { source_id: 'src_000000000000', export_path: 'src_111111111111.zip' },
      /purge job data is invalid: export_path must be "src_000000000000\.zip"/,
    ],
    [
      QueueName.pages,
      JobName.pages,
      { source_id: 'src_000000000000' },
      /pages job data is invalid: run_id, batch, embed, space_names, pages are required/,
    ],
  ]
  for (const [queue, name, data, reason] of cases) {
    const run = await settled(queue, await addJob(queue, { name, data }))
    t.equal(run.state, 'failed', `${name} ${JSON.stringify(data)}`)
    t.match(run.failedReason, reason)
  }
})

const pageIds = async (rig: { rows(): Promise<Array<Record<string, unknown>>> }) =>
  [...new Set((await rig.rows()).map((r) => String(r.page_id)))].sort()

t.test(
  'a finished sync retried from the dashboard crawls again: it never deletes a page that is back',
  async (t) => {
    const pages = generatedSpace(10)
    const { rig, queues, addJob, retryJob, settled } = await setup(t, pages)
    const source = await rig.register()
    const all = pages.map((p) => p.id).sort()
    t.equal((await rig.waitFor(await rig.enqueue(source))).state, 'completed')
    const edit = (index: number, text: string) => {
      const page = pages[index] as StandInPage
      page.version++
      page.storage = `<p>${text}</p>`
      return page.id
    }

    // Page 1005 leaves the space: that sync deletes it. Its one batch (page 1002, edited) is
    // refused for good, so the run also leaves a failed batch behind.
    const moved = pages.splice(4, 1)[0] as StandInPage
    edit(1, 'Second version of page two.')
    rig.confluence.options.faults.push({
      path: /\/api\/v2\/pages\?id=1002/,
      status: 401,
      body: '{"code":401}',
    })
    const removal = await rig.enqueue(source)
    const removed = await rig.waitFor(removal)
    t.match(removed.progress, { deleted: 1, failed: 1 })
    t.notOk((await pageIds(rig)).includes('1005'))
    t.same(
      (await settled(QueueName.sync, removal)).data,
      { source_id: source },
      'no step data left',
    )

    // 1005 is back and indexed again.
    pages.splice(4, 0, moved)
    const back = await rig.waitFor(await rig.enqueue(source))
    t.match(back.progress, { converted: 2, deleted: 0 })
    t.same(await pageIds(rig), all)

    // The dashboard's retry of the finished removal sync is a new run: it crawls, finds 1005,
    // and indexes what changed since; the earlier run's failed batch is not counted again.
    const edited = edit(6, 'Second version of page seven.')
    await retryJob(QueueName.sync, removal)
    const rerun = await rig.waitFor(removal)
    t.equal(rerun.state, 'completed', rerun.failedReason ?? '')
    t.same(rerun.progress, {
      ...rerun.progress,
      discovered: 10,
      converted: 1,
      unchanged: 9,
      deleted: 0,
      failed: 0,
    })
    t.same(rerun.errors, [])
    const rows = await rig.rows()
    t.same(await pageIds(rig), all, 'page 1005 is still indexed')
    t.ok(rows.filter((r) => r.page_id === edited).every((r) => r.version === '2'))

    // A sync finished by a worker before this fix kept its step data: run again, it crawls too.
    const job = await queues.get(QueueName.sync)?.getJob(removal)
    await job?.updateData({ source_id: source, step: 'finish', gone: ['1005'], indexed: 10 })
    const later = edit(7, 'Second version of page eight.')
    await retryJob(QueueName.sync, removal)
    const legacy = await rig.waitFor(removal)
    t.match(legacy.progress, { discovered: 10, converted: 1, deleted: 0 })
    t.same(await pageIds(rig), all)
    t.ok((await rig.rows()).filter((r) => r.page_id === later).every((r) => r.version === '2'))

    // Step data forged through the dashboard cannot delete a page the source lists now.
    for (const data of [
      { source_id: source, step: 'finish', gone: ['1005'], indexed: 10 },
      { source_id: source, step: 'finish' },
    ]) {
      const id = await addJob(QueueName.sync, { name: JobName.sync, data })
      t.equal((await settled(QueueName.sync, id)).state, 'completed')
      t.equal((await readRun(rig.client, id)).progress.deleted, 0, JSON.stringify(data))
    }
    t.same(await pageIds(rig), all, 'page 1005 is still indexed')
  },
)

t.test('a purge of a source that is still registered is refused; deleting it purges', async (t) => {
  const { rig, url, addJob, settled } = await setup(t, generatedSpace(3))
  const dir = await tempDir(t, 'cnfl-zip-')
  const zip = await buildExportZip(generatedSpace(3), {
    spaceKey: 'ENG',
    spaceName: 'Engineering',
    path: join(dir, 'eng.zip'),
  })
  const upload = await request(`${url}/api/sources/export?name=Offline`, {
    method: 'POST',
    headers: { ...bearer(ADMIN_KEY), 'content-type': 'application/zip' },
    body: await readFile(zip.path),
    signal: AbortSignal.timeout(10_000),
  })
  t.equal(upload.statusCode, 201)
  const { id } = (await upload.body.json()) as { id: string }
  const file = join(rig.config.EXPORTS_DIR, `${id}.zip`)
  const ofSource = async () => (await rig.rows()).filter((r) => r.source_id === id).length
  // The upload queued the first sync; wait for its rows.
  const deadline = Date.now() + 30_000
  while ((await ofSource()) === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100))
  }
  const rows = await ofSource()
  t.ok(rows > 0, 'the export is indexed')

  const forged = await addJob(QueueName.sync, {
    name: JobName.purge,
    data: { source_id: id, export_path: `${id}.zip` },
    options: { attempts: 3 },
  })
  const refused = await settled(QueueName.sync, forged)
  t.equal(refused.state, 'failed')
  t.match(refused.failedReason, `purge refused: source ${id} is still registered`)
  t.equal(refused.attemptsMade, 1, 'refused for good, not retried')
  t.equal(await ofSource(), rows, 'its rows stay')
  t.ok(existsSync(file), 'its zip stays')
  t.ok(await getSource(rig.client, id), 'the source stays registered')
  t.equal((await rig.waitFor(await rig.enqueue(id))).state, 'completed', 'and still syncs')

  // DELETE removes the source first, then queues its purge: that one goes through.
  const deleted = await request(`${url}/api/sources/${id}`, {
    method: 'DELETE',
    headers: bearer(ADMIN_KEY),
    signal: AbortSignal.timeout(10_000),
  })
  t.equal(deleted.statusCode, 202)
  const { job_id } = (await deleted.body.json()) as { job_id: string }
  t.equal((await settled(QueueName.sync, job_id)).state, 'completed')
  t.equal(await ofSource(), 0, 'its rows are gone')
  t.notOk(existsSync(file), 'its zip is gone')
})

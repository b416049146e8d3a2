import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { JobName, QUEUE_PREFIX, QueueName } from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { ADMIN_KEY, bearer, listenTestApp, READER_KEY } from '../helpers/api.ts'
import { generatedSpace, ingestRig, rigApiEnv } from '../helpers/ingest.ts'

// Job data is checked by the worker whoever queued it: here a job forged through the queue
// dashboard's own add-job route (over real HTTP, as an admin's browser would send it) reaches a
// real worker, which fails it for good with the bad field named instead of acting on it.

const keys = { API_KEYS: READER_KEY, ADMIN_API_KEYS: ADMIN_KEY }

async function setup(t: Test) {
  const rig = await ingestRig(t, { pages: generatedSpace(1) })
  await rig.startWorker()
  const { url } = await listenTestApp(t, {
    ...keys,
    ...rigApiEnv(rig),
    EXPORTS_DIR: rig.config.EXPORTS_DIR,
  })
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
  /** Waits until a job has finished; the job as it ended. */
  const settled = async (queueName: string, id: string) => {
    const queue = queues.get(queueName) as Queue
    const deadline = Date.now() + 30_000
    for (;;) {
      const state = await queue.getJobState(id)
      if (state === 'completed' || state === 'failed') {
        const job = await queue.getJob(id)
        return { state, failedReason: job?.failedReason, attemptsMade: job?.attemptsMade }
      }
      if (Date.now() > deadline) throw new Error(`job ${id} still ${state}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  return { rig, addJob, settled }
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

import { hostname } from 'node:os'
import { QUEUE_PREFIX, QueueName, syncDedupId } from '@confluence-bot/shared'
import { Queue, Worker } from 'bullmq'
import t from 'tap'
import {
  generatedSpace,
  ingestRig,
  SECOND_EMBED_MODEL,
  withSecondEmbedModel,
} from '../../helpers/ingest.ts'
import { runScript } from '../../helpers/process.ts'

// `cnfl ingest` beside a running worker (the service's): the queues are shared, so the CLI leaves
// its sync to that worker instead of starting one that would take the service's page batches and
// run them with the CLI's settings.

const CNFL = 'scripts/cnfl.ts'

/** The CLI's settings, unlike the service's: no allowed stand-in host, another embedding model. */
const cliEnv = (env: Record<string, string>) => ({
  ...env,
  CONFLUENCE_ALLOWED_HOSTS: '',
  EMBED_MODEL: SECOND_EMBED_MODEL,
})

/** Resolves once a sync of the source is queued (the CLI has queued its sync). */
async function queued(queue: Queue, sourceId: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while ((await queue.getDeduplicationJobId(syncDedupId(sourceId))) === null) {
    if (Date.now() > deadline) throw new Error(`no sync of ${sourceId} after ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

t.test(
  'cnfl ingest leaves its sync to a running worker, which runs it with its own settings',
  async (t) => {
    const rig = await ingestRig(t, {
      pages: generatedSpace(12),
      ollama: { models: withSecondEmbedModel() },
    })
    await rig.startWorker()
    const run = await runScript(
      CNFL,
      ['ingest', '--kind', 'cloud', '--base-url', rig.confluence.baseUrl, '--space', 'ENG'],
      { env: cliEnv(rig.env) },
    )
    t.equal(run.code, 0, run.stderr)
    t.match(run.stderr, /^a worker is running: the sync runs there$/m)
    t.notMatch(run.stderr, /CONFLUENCE_ALLOWED_HOSTS/)
    const summary = JSON.parse(run.stdout)
    t.match(summary, {
      state: 'completed',
      progress: { discovered: 12, converted: 12, embedded: 12, failed: 0 },
      errors: 0,
    })
    const rows = await rig.rows()
    t.equal(new Set(rows.map((r) => r.page_id)).size, 12, 'every page is indexed')
    t.ok(
      rows.every((r) => r.embed_model === 'nomic-embed-text'),
      "every vector is the service's model, not the CLI's",
    )
    const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
    t.teardown(() => queue.close())
    t.equal(
      (await queue.getJob(summary.job_id))?.processedBy,
      `${hostname()}:${process.pid}`,
      "the service's worker (this process) ran the sync",
    )
  },
)

t.test("cnfl ingest of one source leaves a running sync's page batches alone", async (t) => {
  const a = generatedSpace(40, 'AAA')
  const b = generatedSpace(6, 'BBB').map((p) => ({
    ...p,
    id: String(Number(p.id) + 1000),
    parentId: p.parentId === undefined ? undefined : String(Number(p.parentId) + 1000),
  }))
  const rig = await ingestRig(t, {
    pages: [...a, ...b],
    ollama: { models: withSecondEmbedModel() },
  })
  // One batch at a time, each slow: A's batches wait in the queue while the CLI starts.
  await rig.startWorker({ WORKER_CONCURRENCY: '1' })
  const sourceA = await rig.register({ name: 'A', spaces: ['AAA'] })
  const sourceB = await rig.register({ name: 'B', spaces: ['BBB'] })
  rig.confluence.options.delayMs = 1_000
  const syncA = await rig.enqueue(sourceA)
  const pages = new Queue(QueueName.pages, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => pages.close())
  while ((await pages.getWaitingCount()) < 2) await new Promise((r) => setTimeout(r, 50))

  const cli = runScript(CNFL, ['ingest', sourceB], { env: cliEnv(rig.env) })
  const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  await queued(queue, sourceB)
  // The CLI has queued its sync (a worker of its own would be running by now): A may speed up.
  rig.confluence.options.delayMs = 0

  const run = await cli
  t.equal(run.code, 0, run.stderr)
  t.match(run.stderr, /^a worker is running: the sync runs there$/m)
  t.match(JSON.parse(run.stdout), {
    source_id: sourceB,
    state: 'completed',
    progress: { discovered: 6, converted: 6, failed: 0 },
    errors: 0,
  })
  const doneA = await rig.waitFor(syncA)
  t.equal(doneA.state, 'completed', doneA.failedReason ?? 'A completed')
  t.match(doneA.progress, { discovered: 40, converted: 40, failed: 0 })
  t.same(doneA.errors, [], "no batch of A ran with the CLI's settings")
  t.ok((await rig.rows()).every((r) => r.embed_model === 'nomic-embed-text'))
})

t.test('cnfl ingest runs its sync itself once the running worker has gone', async (t) => {
  const rig = await ingestRig(t, { pages: generatedSpace(4) })
  const source = await rig.register()
  // A worker connected to the pages queue that takes no job (paused, or stopping).
  const idle = new Worker(QueueName.pages, async () => {}, {
    connection: { url: rig.redis.url },
    prefix: QUEUE_PREFIX,
    autorun: false,
  })
  idle.on('error', () => {})
  await idle.waitUntilReady()

  const cli = runScript(CNFL, ['ingest', source], { env: rig.env })
  const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  await queued(queue, source)
  await idle.close()

  const run = await cli
  t.equal(run.code, 0, run.stderr)
  const left = run.stderr.indexOf('a worker is running: the sync runs there\n')
  const took = run.stderr.indexOf('no worker is running any more: this process runs the sync\n')
  t.ok(left >= 0 && took > left, run.stderr)
  t.match(JSON.parse(run.stdout), { state: 'completed', progress: { converted: 4 }, errors: 0 })
  t.equal(await queue.getWorkersCount(), 0, "the CLI's own worker has stopped with it")
})

t.test(
  'cnfl ingest says when a paused queue holds its sync, then completes once resumed',
  async (t) => {
    const rig = await ingestRig(t, { pages: generatedSpace(4) })
    await rig.startWorker()
    const source = await rig.register()
    const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
    t.teardown(() => queue.close())
    await queue.pause()
    let told: () => void = () => {}
    const saidPaused = new Promise<void>((resolve) => {
      told = resolve
    })
    const run = runScript(CNFL, ['ingest', source], {
      env: rig.env,
      onStderr: (stderr) => {
        if (stderr.includes('the queues are paused')) told()
      },
    })
    await saidPaused
    await queue.resume()
    const done = await run
    t.equal(done.code, 0, done.stderr)
    t.match(
      done.stderr,
      /^the queues are paused \(the dashboard can resume them\): the sync waits$/m,
    )
    t.match(JSON.parse(done.stdout), { state: 'completed', progress: { converted: 4 }, errors: 0 })
  },
)

t.test('cnfl ingest runs its sync itself where Redis does not list its clients', async (t) => {
  const rig = await ingestRig(t, { pages: generatedSpace(3) })
  const source = await rig.register()
  // A user whose ACL leaves out CLIENT: its workers run, CLIENT LIST answers NOPERM.
  await rig.client.call(
    'ACL',
    'SETUSER',
    'cnfl',
    'on',
    '>cnfl-secret',
    '~*',
    '&*',
    '+@all',
    '-client',
  )
  const redisUrl = `redis://cnfl:cnfl-secret@127.0.0.1:${rig.redis.port}`
  const run = await runScript(CNFL, ['ingest', source], {
    env: { ...rig.env, REDIS_URL: redisUrl },
  })
  t.equal(run.code, 0, run.stderr)
  t.match(run.stderr, /^could not tell whether a worker is running: NOPERM .*client\|list/m)
  t.notMatch(run.stderr, /a worker is running: the sync runs there/)
  t.match(JSON.parse(run.stdout), { state: 'completed', progress: { converted: 3 }, errors: 0 })
})

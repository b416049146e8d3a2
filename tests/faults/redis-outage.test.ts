import { readRun } from '@confluence-bot/shared'
import t from 'tap'
import { ADMIN_KEY, READER_KEY } from '../helpers/api.ts'
import { generatedSpace, ingestRig, sameAsFromScratch, syncFromScratch } from '../helpers/ingest.ts'
import { apiProcess, durableRedis, LONG, waitUntil, workerProcess } from './faults.ts'

// Issue 13, fault 2: Redis stopped (SIGTERM, as an operator or the orchestrator would) in the
// middle of a sync accepted by an api process and run by a worker process, while chat requests
// keep coming. Readiness says `down` while it is away and `ok` again within 5 s of its return;
// the accepted sync completes with the index a sync from scratch builds; every chat request
// ends (an answer or an error, none hangs or is cut short) and chat answers again afterwards;
// neither process exits. FAULTS_LONG=1: a 10 s outage.

const OUTAGE_MS = LONG ? 10_000 : 3_000
const PAGES = LONG ? 120 : 24

type Json = Record<string, unknown>

t.test(`Redis away for ${OUTAGE_MS / 1000} s during a sync and chat traffic`, async (t) => {
  const rig = await ingestRig(t, {
    pages: generatedSpace(PAGES),
    confluence: { delayMs: 30 },
    env: { SYNC_BATCH_PAGES: '2' },
  })
  const redis = await durableRedis(rig, rig.client)
  const worker = workerProcess(t, rig)
  const { api, url } = await apiProcess(t, rig, {
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    RAG_ENABLED: 'true',
    HEALTH_TIMEOUT_MS: '500',
    // The per-key limit stays on (it counts in Redis: the outage reaches it too), above the
    // rate this test's chats and health polls go at.
    RATE_LIMIT_PER_MINUTE: '100000',
  })
  const started = await worker.waitFor(/worker started/, 30_000)
  const workerReady = async () =>
    (await fetch(`http://127.0.0.1:${/"healthPort":(\d+)/.exec(started)?.[1]}/health/ready`)).status
  const call = async (path: string, key: string, body?: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
    })
    return { status: res.status, text: await res.text() }
  }
  const health = async () =>
    (JSON.parse((await call('/api/health', READER_KEY)).text) as Json).status

  const source = await rig.register()
  const accepted = await call(`/api/sources/${source}/sync`, ADMIN_KEY, {})
  t.equal(accepted.status, 202, accepted.text)
  const job = (JSON.parse(accepted.text) as Json).job_id as string

  // Chat traffic, one request after another until told to stop: how each one ended. Every other
  // one continues a conversation, which is kept in Redis.
  const endings: string[] = []
  let chatting = true
  let conversation: string | undefined
  const chat = async () => {
    const continued = endings.length % 2 === 1 ? conversation : undefined
    const { status, text } = await call('/api/chat', READER_KEY, {
      model: 'llama3.2',
      stream: true,
      messages: [{ role: 'user', content: 'What are the details of topic 3?' }],
      ...(continued === undefined ? {} : { conversation_id: continued }),
    })
    if (status !== 200) return endings.push(`error ${status}`)
    const lines = text.trimEnd().split('\n')
    conversation ??= (JSON.parse(lines[0] as string) as Json).conversation_id as string
    const last = JSON.parse(lines.at(-1) as string) as Json
    endings.push(last.done === true ? 'done' : typeof last.error === 'string' ? 'error' : 'short')
  }
  const traffic = (async () => {
    while (chatting) {
      await chat().catch((err: Error) => endings.push(`failed: ${err.message}`))
      await new Promise((r) => setTimeout(r, 50))
    }
  })()

  await waitUntil(
    'the sync under way',
    async () => (await readRun(rig.client, job)).progress.converted >= 4,
  )
  await redis.stop()
  const stoppedAt = Date.now()
  await waitUntil('readiness down', async () => (await health()) === 'down', OUTAGE_MS)
  t.pass(`readiness down ${Date.now() - stoppedAt} ms after Redis stopped`)
  t.equal(await workerReady(), 503, "so is the worker's")
  const down = JSON.parse((await call('/api/health', READER_KEY)).text) as {
    checks: { redis: { error?: string } }
  }
  t.match(down.checks.redis.error, /REDIS_URL=redis:\/\/127\.0\.0\.1:\d+/, 'naming what is down')
  await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (Date.now() - stoppedAt))))
  const duringOutage = endings.length
  await redis.start()
  const backAt = Date.now()
  await waitUntil('readiness ok', async () => (await health()) === 'ok', 5_000, 100)
  t.pass(`readiness ok ${Date.now() - backAt} ms after Redis returned`)
  await waitUntil("the worker's readiness", async () => (await workerReady()) === 200, 5_000, 100)

  const run = await rig.waitFor(job, 120_000)
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.equal(run.progress.failed, 0, 'no page given up on')
  chatting = false
  await traffic
  await chat()
  t.equal(endings.at(-1), 'done', 'chat answers again')
  const tally = new Map<string, number>()
  for (const e of endings) tally.set(e, (tally.get(e) ?? 0) + 1)
  t.comment(`chats: ${JSON.stringify(Object.fromEntries(tally))}`)
  t.ok(duringOutage > 0, `${duringOutage} chats before Redis came back`)
  t.same(
    endings.filter((e) => e === 'short' || e.startsWith('failed')),
    [],
    `every chat ended with an answer or an error (${endings.length} chats)`,
  )
  t.equal(api.child.exitCode, null, 'the api is still running')
  t.equal(worker.child.exitCode, null, 'the worker is still running')

  const scratch = await syncFromScratch(t, rig).catch((err: Error) => {
    t.comment(worker.output().slice(-6000))
    throw err
  })
  await sameAsFromScratch(t, rig, source, scratch)
  worker.child.kill('SIGTERM')
  api.child.kill('SIGTERM')
  t.equal((await worker.exit).code, 0)
  t.equal((await api.exit).code, 0)
})

import t from 'tap'
import { request } from 'undici'
import { listenTestApp } from '../helpers/api.ts'
import { startRedis } from '../helpers/redis.ts'

// Back-pressure over a real socket. The event loop of this very process (the api's) is kept
// saturated on purpose: spins of busy work back to back, with a turn for I/O between them so
// requests are still read and answered. Nothing is timed: the test waits (with a generous bound)
// for the api to notice, checks what a shed request and a probe get, then stops spinning and
// waits for the api to take work again.

/** Keeps the loop busy (spins of `spinMs`) until the returned function is called. */
function saturate(spinMs: number): () => void {
  let on = true
  const spin = () => {
    if (!on) return
    const end = performance.now() + spinMs
    while (performance.now() < end) {
      // busy: this is the load
    }
    setImmediate(spin)
  }
  setImmediate(spin)
  return () => {
    on = false
  }
}

async function get(url: string) {
  const res = await request(url)
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, text }
}

/** GETs `url` until `done` says so (or 20 s pass); the last answer. */
async function until(url: string, done: (answer: Awaited<ReturnType<typeof get>>) => boolean) {
  const deadline = Date.now() + 20_000
  for (;;) {
    const answer = await get(url)
    if (done(answer) || Date.now() > deadline) return answer
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

// A real Redis, so the api starts at once and readiness answers without waiting on it.
const redis = await startRedis()
t.teardown(() => redis.stop())

const overloaded = (answer: { status: number; text: string }) =>
  answer.status === 503 && answer.text.includes('"overloaded"')

for (const [setting, env] of [
  [
    'PRESSURE_MAX_EVENT_LOOP_UTILIZATION',
    { PRESSURE_MAX_EVENT_LOOP_UTILIZATION: '0.5', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0' },
  ],
  [
    'PRESSURE_MAX_EVENT_LOOP_DELAY_MS',
    { PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '20', PRESSURE_MAX_EVENT_LOOP_UTILIZATION: '0' },
  ],
] as const) {
  t.test(`past ${setting}: 503 with Retry-After, probes answer, then work resumes`, async (t) => {
    const { url } = await listenTestApp(t, { REDIS_URL: redis.url, ...env })
    // Nothing is shed in the first seconds (WARM_UP_MS); the low threshold may be past already.
    const quiet = await until(`${url}/api/me`, (answer) => answer.status === 200)
    t.equal(quiet.status, 200, 'a quiet api takes work')

    const stop = saturate(60)
    let stopped = false
    t.teardown(() => {
      if (!stopped) stop()
    })
    const shed = await until(`${url}/api/me`, overloaded)
    t.equal(shed.status, 503, 'a saturated api sheds new work')
    t.equal(shed.headers['retry-after'], '2', 'and says when to come back')
    t.ok(shed.headers['x-request-id'], 'the answer still has its request id')
    const body = JSON.parse(shed.text)
    t.match(body, { error: 'overloaded', statusCode: 503 }, 'in the API error shape')
    t.match(body.message, setting, 'naming the setting that was passed')

    // Still saturated: the probes and the scrape answer as ever.
    t.equal((await get(`${url}/api/health/live`)).status, 200, 'liveness answers')
    const ready = await get(`${url}/api/health`)
    t.notOk(overloaded(ready), 'readiness is not shed')
    t.match(JSON.parse(ready.text), { checks: { redis: { status: 'ok' } } }, 'it checks as ever')
    t.equal((await get(`${url}/metrics`)).status, 200, 'the scrape answers')
    t.ok(overloaded(await get(`${url}/api/me`)), 'while other work is still shed')

    stop()
    stopped = true
    const back = await until(`${url}/api/me`, (answer) => answer.status === 200)
    t.equal(back.status, 200, 'once the load is gone, work is taken again')
  })
}

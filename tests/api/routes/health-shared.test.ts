// Review 6, D8: `/api/health` takes no key and is exempt from the rate limit and back-pressure,
// so it must not relay every request to Ollama (and Redis, and LanceDB). A round of checks is
// shared by the requests that arrive while it runs and answers for READINESS_CACHE_MS after.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import t from 'tap'
import { request } from 'undici'
import { READINESS_CACHE_MS } from '../../../services/api/src/plugins/app/readiness.ts'
import { listenTestApp } from '../../helpers/api.ts'
import { standIn } from '../../helpers/ollama.ts'
import type { OllamaStandIn } from '../../helpers/ollama-stand-in.ts'
import { startRedis } from '../../helpers/redis.ts'

type Teardown = { teardown(fn: () => unknown): void }
type Check = { status: string; error?: string; version?: string }
type HealthBody = { status: string; checks: Record<string, Check> }

/**
 * A door in front of the Ollama stand-in: while shut, calls wait in it (a slow Ollama); `broken`
 * answers 500 without reaching the stand-in (an Ollama that fails). The stand-in counts what
 * got through.
 */
async function door(t: Teardown, ollama: OllamaStandIn) {
  let open!: () => void
  let opened = new Promise<void>((resolve) => {
    open = resolve
  })
  const state = { waiting: 0, broken: false }
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    if (state.broken) return res.writeHead(500, { 'content-type': 'text/plain' }).end('broken')
    state.waiting++
    await opened
    state.waiting--
    const upstream = await fetch(`${ollama.url}${req.url}`, { method: req.method })
    res.writeHead(upstream.status, { 'content-type': 'application/json; charset=utf-8' })
    res.end(await upstream.text())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    open()
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    state,
    open: () => open(),
    shut: () => {
      opened = new Promise<void>((resolve) => {
        open = resolve
      })
    },
  }
}

const versionCalls = (ollama: OllamaStandIn) =>
  ollama.requests.filter((sent) => sent.path === '/api/version').length

async function health(url: string) {
  const res = await request(`${url}/api/health`)
  return { status: res.statusCode, body: (await res.body.json()) as HealthBody }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function rig(t: Teardown) {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const ollama = await standIn(t, { version: '0.12.6' })
  const front = await door(t, ollama)
  front.open()
  const { app, url } = await listenTestApp(t, {
    REDIS_URL: redis.url,
    OLLAMA_URL: front.url,
    // Room to hold a round open at the door while requests pile up behind it.
    HEALTH_TIMEOUT_MS: '20000',
  })
  await app.redis.ping().catch(() => undefined)
  return { app, url, ollama, front }
}

t.test('requests that arrive while a round runs share it: one Ollama call', async (t) => {
  const { app, url, ollama, front } = await rig(t)
  front.shut()
  const N = 40
  let received = 0
  app.server.on('request', () => received++)
  const answers = Array.from({ length: N }, () => health(url))
  while (received < N || front.state.waiting < 1) await sleep(20)
  // Every request is in; give their handlers time to reach the check, all behind the door.
  await sleep(300)
  t.equal(front.state.waiting, 1, 'one check waits at Ollama, not one per request')
  const opened = performance.now()
  front.open()
  const all = await Promise.all(answers)
  const elapsed = performance.now() - opened
  t.same(
    all.map((answer) => answer.status),
    Array(N).fill(200),
  )
  t.equal(new Set(all.map((answer) => JSON.stringify(answer.body))).size, 1, 'one result for all')
  t.match(all[0]?.body, { status: 'ok', checks: { ollama: { status: 'ok', version: '0.12.6' } } })
  // A request the handler reached after the round could only start a new one a full interval on.
  t.ok(
    versionCalls(ollama) <= 1 + Math.floor(elapsed / READINESS_CACHE_MS),
    `${versionCalls(ollama)} Ollama calls for ${N} requests`,
  )
})

t.test(
  'a flood of probes costs at most one round per interval; a change shows after it',
  async (t) => {
    const { app, url, ollama, front } = await rig(t)
    const started = performance.now()
    let answered = 0
    for (let wave = 0; wave < 5; wave++) {
      const all = await Promise.all(Array.from({ length: 40 }, () => health(url)))
      answered += all.filter((answer) => answer.status === 200).length
    }
    const elapsed = performance.now() - started
    t.equal(answered, 200, 'every probe answered')
    const calls = versionCalls(ollama)
    t.ok(calls >= 1, 'Ollama was checked')
    t.ok(
      calls <= 1 + Math.floor(elapsed / READINESS_CACHE_MS),
      `${calls} Ollama calls for 200 probes in ${Math.round(elapsed)} ms`,
    )

    // Ollama starts failing: within one interval readiness says so.
    front.state.broken = true
    await sleep(READINESS_CACHE_MS + 100)
    const degraded = await health(url)
    t.equal(degraded.status, 200)
    t.match(degraded.body, { status: 'degraded', checks: { ollama: { status: 'down' } } })
    t.match(degraded.body.checks.ollama?.error, /answered 500/)

    // And back: the next round after the interval sees it up again.
    front.state.broken = false
    await sleep(READINESS_CACHE_MS + 100)
    t.match((await health(url)).body, { status: 'ok', checks: { ollama: { status: 'ok' } } })

    // Shutting down is not cached: the very next probe fails, before any new round.
    const before = versionCalls(ollama)
    app.readiness.shuttingDown = true
    const draining = await health(url)
    t.equal(draining.status, 503)
    t.match(draining.body, { status: 'down', checks: { redis: { status: 'ok' } } })
    t.ok(versionCalls(ollama) - before <= 1, 'and it still answers from the shared round')
  },
)

t.test('liveness never runs a check', async (t) => {
  const { url, ollama } = await rig(t)
  for (let i = 0; i < 20; i++) {
    const res = await request(`${url}/api/health/live`)
    t.same(await res.body.json(), { status: 'ok' })
  }
  t.equal(versionCalls(ollama), 0)
})

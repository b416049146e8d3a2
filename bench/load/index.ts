import { fork } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  createSource,
  JobName,
  jobId,
  QUEUE_PREFIX,
  QueueName,
  workerProcessEnv,
} from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import { Agent, request } from 'undici'
import { runService, type Service } from '../../tests/helpers/process.ts'
import { startRedis } from '../../tests/helpers/redis.ts'
import { note, reporter, setting } from '../lib/report.ts'
import { percentile } from '../lib/stats.ts'
import type { StandInsReady, StandInsSpec } from './stand-ins.ts'

// `pnpm bench load`: the api under mixed load while a real worker syncs a space. A real api
// process and a real worker process (as deployed: their entry files, their process settings),
// real Redis, LanceDB in a temp directory, and the Confluence and Ollama stand-ins in a process
// of their own (stand-ins.ts), so this one only drives and measures; the Ollama stand-in streams answers at LOAD_TOKENS_PER_S tokens a second, as a model
// on a GPU would. For LOAD_SECONDS, at once:
// - LOAD_CHAT_USERS users ask grounded questions with streamed answers, one after another;
// - LOAD_SEARCH_USERS users search, two searches a second each;
// - a sync of a generated space of LOAD_PAGES pages runs in the worker;
// - readiness (/api/health: Redis, LanceDB, Ollama) and liveness are probed as Kubernetes does.
// Every user has an API key of its own, as people do, under the default per-key rate limits.
// Then, for LOAD_PUSH_SECONDS, LOAD_PUSH_CONNECTIONS connections search as fast as they can
// (each with its own key), past what the api can take: back-pressure should answer 503
// `overloaded` with Retry-After, and the process should stay up and answer its probes.
// Figures (JSON lines on stdout): error rate, p50/p99 per route, health p99 while the sync runs,
// api and worker peak RSS, 503/429 counts; the push's status counts. Targets are printed on
// stderr next to the figures: no errors below saturation, readiness p99 under 50 ms while the
// sync runs.

const BENCH = 'load'
const report = reporter(BENCH)
const log = (message: string) => note(BENCH, message)
const SECONDS = setting('LOAD_SECONDS', 60)
const PUSH_SECONDS = setting('LOAD_PUSH_SECONDS', 10)
const CHAT_USERS = setting('LOAD_CHAT_USERS', 12, true)
const SEARCH_USERS = setting('LOAD_SEARCH_USERS', 8, true)
const PAGES = setting('LOAD_PAGES', 2_000, true)
const TOKENS_PER_S = setting('LOAD_TOKENS_PER_S', 30)
const PUSH_CONNECTIONS = setting('LOAD_PUSH_CONNECTIONS', 256, true)
/** Pages of the space indexed before the load starts (what chat and search find). */
const INDEXED_PAGES = 200

const HEALTH_TARGET_MS = 50

// The answer the stand-in streams: about 60 tokens of a plausible grounded answer.
const ANSWER = (
  'To roll back the billing service, run helm rollback billing with the previous revision ' +
  'number from the release notes [1]. Check the dashboard afterwards and page the on-call ' +
  'engineer if the error rate stays above one percent for more than five minutes [2]. '
)
  .split(/(?<= )/)
  .filter((token) => token !== '')

const QUESTIONS = [
  'How do I roll back a deployment?',
  'Who is paged when the service is down?',
  'What does the runbook say about topic 42?',
  'How are database passwords rotated?',
]
const QUERIES = ['rollback deployment', 'runbook topic', 'on-call paging', 'section details']

async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN) / 1024
}

/** What one route saw: latencies of successes (ms) and counts of every other outcome. */
type Route = { ms: number[]; errors: number; overloaded: number; limited: number; busy: number }
const route = (): Route => ({ ms: [], errors: 0, overloaded: 0, limited: 0, busy: 0 })

/** Files a non-2xx answer under its kind; anything unexpected is an error (and is shown once). */
function refused(r: Route, status: number, body: string, shown: Set<string>): void {
  if (status === 503 && body.includes('"overloaded"')) r.overloaded++
  else if (status === 429) r.limited++
  else if (status === 503) r.busy++
  else {
    r.errors++
    const key = `${status} ${body.slice(0, 200)}`
    if (!shown.has(key)) {
      shown.add(key)
      log(`unexpected answer: ${key}`)
    }
  }
}

const ADMIN_KEY = 'load-admin-key-0123456789'

/** A Prometheus scrape (the admin key works for the api; the worker's needs none here). */
async function scrape(target: string): Promise<string> {
  const res = await request(target, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })
  return res.body.text()
}

/** The sum of a metric's samples in a scrape (every label set). */
function sample(text: string, name: string): number {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0)
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

type AutocannonResult = {
  errors: number
  timeouts: number
  statusCodeStats: Record<string, { count: number }>
  latency: { p50: number; p99: number }
  requests: { total: number }
}
type Autocannon = (options: Record<string, unknown>) => Promise<AutocannonResult>
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon

async function main() {
  const cleanups: Array<() => unknown> = []
  const dir = await mkdtemp(join(tmpdir(), 'cnfl-bench-load-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  try {
    const redis = await startRedis()
    cleanups.unshift(() => redis.stop())
    // The upstreams run in a process of their own (stand-ins.ts), killed with this one.
    const upstreams = fork(
      fileURLToPath(new URL('./stand-ins.ts', import.meta.url)),
      [
        JSON.stringify({
          tokens: ANSWER,
          tokenDelayMs: 1000 / TOKENS_PER_S,
          spaces: [
            { key: 'DOCS', pages: INDEXED_PAGES, firstId: 100_001 },
            { key: 'ENG', pages: PAGES, firstId: 500_001 },
          ],
        } satisfies StandInsSpec),
      ],
      {
        execArgv: ['--conditions=@confluence-bot/source'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      },
    )
    const killUpstreams = () => upstreams.kill('SIGKILL')
    process.on('exit', killUpstreams)
    cleanups.unshift(killUpstreams)
    const [ready] = (await once(upstreams, 'message')) as [StandInsReady]
    const ollama = { url: ready.ollama }
    const confluence = { baseUrl: ready.confluence }
    const client = new Redis(redis.url, { maxRetriesPerRequest: null })
    cleanups.unshift(() => client.quit())
    const queue = new Queue(QueueName.sync, { connection: client, prefix: QUEUE_PREFIX })
    cleanups.unshift(() => queue.close())
    const teardown = { teardown: (fn: () => unknown) => cleanups.unshift(fn) }

    const common = {
      REDIS_URL: redis.url,
      OLLAMA_URL: ollama.url,
      LANCEDB_URI: join(dir, 'lancedb'),
      EXPORTS_DIR: join(dir, 'exports'),
      LOG_LEVEL: 'info',
    }
    const worker = runService(
      teardown,
      'services/worker/src/main.ts',
      workerProcessEnv({
        ...common,
        CONFLUENCE_ALLOWED_HOSTS: '127.0.0.1',
        CONFLUENCE_REQUESTS_PER_SECOND: '1000',
        WORKER_HEALTH_PORT: '0',
      }),
    )
    const startLine = await worker.waitFor(/worker started/, 60_000)
    const workerMetrics = `http://127.0.0.1:${/"healthPort":(\d+)/.exec(startLine)?.[1]}/metrics`

    const userKeys = Array.from(
      { length: CHAT_USERS + SEARCH_USERS + PUSH_CONNECTIONS },
      (_, i) => `load-user-${String(i).padStart(4, '0')}-key`,
    )
    const api = runService(teardown, 'services/api/src/server.ts', {
      ...common,
      PORT: '0',
      API_KEYS: userKeys.join(','),
      ADMIN_API_KEYS: ADMIN_KEY,
      RAG_ENABLED: 'true',
      // Every question reaches the model: the stand-in's embeddings are lexical, not semantic.
      RAG_MIN_SIMILARITY: '-1',
    })
    const listening = await api.waitFor(/Server listening at/, 60_000)
    const url = /listening at (http:\/\/\S+?)"/.exec(listening)?.[1] as string
    log(`api at ${url}; indexing ${INDEXED_PAGES} pages first…`)

    const sync = async (spaceKey: string, name: string) => {
      const source = await createSource(client, {
        name,
        kind: 'cloud',
        base_url: confluence.baseUrl,
        spaces: [spaceKey],
      })
      const job = await queue.add(
        JobName.sync,
        { source_id: source.id },
        { jobId: jobId('sync', source.id, Date.now()) },
      )
      return job.id as string
    }
    const settled = async (id: string) => {
      for (;;) {
        const state = await queue.getJobState(id)
        if (state === 'completed') return
        if (state === 'failed') throw new Error(`sync ${id} failed`)
        await sleep(200)
      }
    }
    await settled(await sync('DOCS', 'docs'))
    // The upkeep the first sync queued builds the full-text index hybrid search uses.
    for (;;) {
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed')
      if (Object.values(counts).every((n) => n === 0)) break
      await sleep(200)
    }

    const dispatcher = new Agent({ connections: 256, pipelining: 1 })
    const shown = new Set<string>()
    const routes = { chat: route(), search: route(), ready: route(), live: route() }
    const firstToken: number[] = []
    const readyDuringSync: number[] = []
    const liveDuringSync: number[] = []
    let syncing = true
    let running = true

    const chatUser = async (key: string, n: number) => {
      for (let i = n; running; i++) {
        const started = performance.now()
        try {
          const res = await request(`${url}/api/chat`, {
            method: 'POST',
            dispatcher,
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({
              messages: [{ role: 'user', content: QUESTIONS[i % QUESTIONS.length] }],
              stream: true,
            }),
          })
          if (res.statusCode !== 200) {
            refused(routes.chat, res.statusCode, await res.body.text(), shown)
            await sleep(1000)
            continue
          }
          let text = ''
          let first = 0
          for await (const chunk of res.body) {
            if (first === 0) first = performance.now() - started
            text += chunk.toString()
          }
          const last = JSON.parse(text.trimEnd().split('\n').at(-1) as string)
          if (last.done === true && last.error === undefined) {
            routes.chat.ms.push(performance.now() - started)
            firstToken.push(first)
          } else refused(routes.chat, 200, JSON.stringify(last), shown)
        } catch (err) {
          refused(routes.chat, 0, (err as Error).message, shown)
        }
      }
    }
    const searchUser = async (key: string, n: number) => {
      for (let i = n; running; i++) {
        const started = performance.now()
        try {
          const res = await request(`${url}/api/search`, {
            method: 'POST',
            dispatcher,
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ query: QUERIES[i % QUERIES.length], top_k: 5 }),
          })
          const body = await res.body.text()
          if (res.statusCode === 200) routes.search.ms.push(performance.now() - started)
          else refused(routes.search, res.statusCode, body, shown)
        } catch (err) {
          refused(routes.search, 0, (err as Error).message, shown)
        }
        await sleep(Math.max(0, 500 - (performance.now() - started)))
      }
    }
    const probe = async (path: string, r: Route, during: number[], everyMs: number) => {
      while (running) {
        const started = performance.now()
        try {
          const res = await request(`${url}${path}`, { dispatcher })
          const body = await res.body.text()
          const ms = performance.now() - started
          if (res.statusCode === 200) {
            r.ms.push(ms)
            if (syncing) during.push(ms)
          } else refused(r, res.statusCode, body, shown)
        } catch (err) {
          refused(r, 0, (err as Error).message, shown)
        }
        await sleep(Math.max(0, everyMs - (performance.now() - started)))
      }
    }

    log(
      `load for ${SECONDS} s: ${CHAT_USERS} chat users (${TOKENS_PER_S} tokens/s), ` +
        `${SEARCH_USERS} search users (2/s each), a sync of ${PAGES} pages…`,
    )
    const loadBefore = loadavg()[0] as number
    const started = performance.now()
    // Each scrape restarts prom-client's event-loop lag histogram: the next one covers the load.
    await scrape(`${url}/metrics`)
    await scrape(workerMetrics)
    const syncId = await sync('ENG', 'eng')
    let syncSeconds = Number.NaN
    const syncWatch = (async () => {
      for (;;) {
        const state = await queue.getJobState(syncId)
        if (state === 'completed' || state === 'failed') {
          syncSeconds = (performance.now() - started) / 1000
          log(`the sync under load ${state} after ${syncSeconds.toFixed(1)} s`)
          syncing = false
          return
        }
        if (!running) return
        await sleep(200)
      }
    })()
    const users = [
      ...Array.from({ length: CHAT_USERS }, (_, i) => chatUser(userKeys[i] as string, i)),
      ...Array.from({ length: SEARCH_USERS }, (_, i) =>
        searchUser(userKeys[CHAT_USERS + i] as string, i),
      ),
      probe('/api/health', routes.ready, readyDuringSync, 1000),
      probe('/api/health/live', routes.live, liveDuringSync, 200),
    ]
    await sleep(SECONDS * 1000)
    running = false
    await Promise.all(users)
    await syncWatch
    if (syncing) log(`the sync was still running when the load stopped (${SECONDS} s)`)

    const all = Object.values(routes)
    const answered = all.reduce((n, r) => n + r.ms.length, 0)
    const errors = all.reduce((n, r) => n + r.errors, 0)
    const total = all.reduce(
      (n, r) => n + r.ms.length + r.errors + r.overloaded + r.limited + r.busy,
      0,
    )
    // On a shared machine, other programs' load is why a run comes out slow.
    const loadAfter = loadavg()[0] as number
    report('host_load_avg_1m', Math.max(loadBefore, loadAfter), 'runnable processes')
    log(`host load average (1 min): ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after`)
    report('requests', total, 'requests')
    report('error_rate', total === 0 ? 0 : errors / total, 'ratio')
    report('errors', errors, 'requests')
    report('answered_2xx', answered, 'requests')
    for (const [name, r] of Object.entries(routes)) {
      if (r.ms.length === 0) continue
      report(`${name}_p50_ms`, percentile(r.ms, 50), 'ms')
      report(`${name}_p99_ms`, percentile(r.ms, 99), 'ms')
      report(`${name}_ok`, r.ms.length, 'requests')
    }
    if (firstToken.length > 0) report('chat_first_byte_p99_ms', percentile(firstToken, 99), 'ms')
    const readyP99 = readyDuringSync.length > 0 ? percentile(readyDuringSync, 99) : Number.NaN
    const liveP99 = liveDuringSync.length > 0 ? percentile(liveDuringSync, 99) : Number.NaN
    if (readyDuringSync.length > 0) report('health_ready_p99_ms_during_sync', readyP99, 'ms')
    if (liveDuringSync.length > 0) report('health_live_p99_ms_during_sync', liveP99, 'ms')
    report(
      'overloaded_503',
      all.reduce((n, r) => n + r.overloaded, 0),
      'requests',
    )
    report(
      'busy_503',
      all.reduce((n, r) => n + r.busy, 0),
      'requests',
    )
    report(
      'rate_limited_429',
      all.reduce((n, r) => n + r.limited, 0),
      'requests',
    )
    if (!Number.isNaN(syncSeconds)) report('sync_under_load_s', syncSeconds, 's')
    // The processes' own view (their /metrics): how late their event loops ran during the load.
    const apiSeen = await scrape(`${url}/metrics`)
    const workerSeen = await scrape(workerMetrics)
    report(
      'api_event_loop_lag_p99_ms',
      sample(apiSeen, 'nodejs_eventloop_lag_p99_seconds') * 1000,
      'ms',
    )
    report(
      'worker_event_loop_lag_p99_ms',
      sample(workerSeen, 'nodejs_eventloop_lag_p99_seconds') * 1000,
      'ms',
    )
    report(
      'worker_pages_indexed',
      sample(workerSeen, 'confluence_bot_worker_pages_indexed_total'),
      'pages',
    )
    report('api_peak_rss_mb', await peakRssMb(api.child.pid as number), 'MB')
    report('worker_peak_rss_mb', await peakRssMb(worker.child.pid as number), 'MB')

    // Two floods at once: searches (bound by the index and the query embeddings) and a cheap
    // keyed route (/api/me: auth, rate limit, a small JSON answer) that only the api's own event
    // loop limits, which is what back-pressure watches.
    log(
      `past saturation for ${PUSH_SECONDS} s: ${PUSH_CONNECTIONS} connections on /api/me and ` +
        `${Math.ceil(PUSH_CONNECTIONS / 4)} searching, flat out…`,
    )
    const pushKeys = userKeys.slice(CHAT_USERS + SEARCH_USERS)
    let nextKey = 0
    const flood = (path: string, connections: number, body?: unknown) =>
      autocannon({
        url: `${url}${path}`,
        connections,
        duration: PUSH_SECONDS,
        timeout: 30,
        requests: [
          {
            method: body === undefined ? 'GET' : 'POST',
            ...(body === undefined ? {} : { body: JSON.stringify(body) }),
            // One key per connection, as many clients would have.
            setupRequest: (req: Record<string, unknown>, context: { key?: string }) => {
              context.key ??= pushKeys[nextKey++ % pushKeys.length] as string
              return {
                ...req,
                headers: {
                  authorization: `Bearer ${context.key}`,
                  'content-type': 'application/json',
                },
              }
            },
          },
        ],
      })
    const live = route()
    running = true
    const liveDuringPush: number[] = []
    const pushProbe = probe('/api/health/live', live, liveDuringPush, 100)
    const floods = await Promise.all([
      flood('/api/me', PUSH_CONNECTIONS),
      flood('/api/search', Math.ceil(PUSH_CONNECTIONS / 4), { query: 'rollback', top_k: 5 }),
    ])
    running = false
    await pushProbe
    const pushed = { s503: 0, s429: 0, errors: 0 }
    for (const [name, push] of [
      ['me', floods[0]],
      ['search', floods[1]],
    ] as const) {
      const status = (code: number) => push.statusCodeStats[String(code)]?.count ?? 0
      const other = Object.entries(push.statusCodeStats)
        .filter(([code]) => !['200', '429', '503'].includes(code))
        .reduce((n, [, s]) => n + s.count, 0)
      const errors = other + push.errors + push.timeouts
      pushed.s503 += status(503)
      pushed.s429 += status(429)
      pushed.errors += errors
      report(`push_${name}_requests`, push.requests.total, 'requests')
      report(`push_${name}_2xx`, status(200), 'requests')
      report(`push_${name}_503`, status(503), 'requests')
      report(`push_${name}_429`, status(429), 'requests')
      report(`push_${name}_errors`, errors, 'requests')
      report(`push_${name}_p50_ms`, push.latency.p50, 'ms')
      report(`push_${name}_p99_ms`, push.latency.p99, 'ms')
    }
    if (liveDuringPush.length > 0) report('push_live_p99_ms', percentile(liveDuringPush, 99), 'ms')
    report('push_live_failures', live.errors + live.overloaded + live.busy, 'requests')
    const alive = api.child.exitCode === null && api.child.signalCode === null
    report('api_alive_after_push', alive ? 1 : 0, 'bool')
    // Work is taken again once the flood is over (the pressure is measured each second).
    await sleep(2_500)
    const after = await request(`${url}/api/search`, {
      method: 'POST',
      dispatcher,
      headers: { authorization: `Bearer ${userKeys[0]}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'rollback' }),
    })
    await after.body.dump()
    report('search_status_after_push', after.statusCode, 'status')
    const overloadedLine = api
      .output()
      .split('\n')
      .find((line) => line.includes('The API is overloaded'))
    if (overloadedLine !== undefined) log(`api: ${overloadedLine.slice(0, 300)}`)

    const met = (ok: boolean) => (ok ? 'met' : 'NOT MET')
    log('targets:')
    log(`  errors below saturation: ${errors} (target 0) ${met(errors === 0)}`)
    log(
      `  readiness p99 while the sync runs: ${readyP99.toFixed(1)} ms (target < ${HEALTH_TARGET_MS} ms) ${met(readyP99 < HEALTH_TARGET_MS)}`,
    )
    log(
      `  liveness p99 while the sync runs: ${liveP99.toFixed(1)} ms (target < ${HEALTH_TARGET_MS} ms) ${met(liveP99 < HEALTH_TARGET_MS)}`,
    )
    log(
      `  past saturation: ${pushed.s503} × 503, ${pushed.s429} × 429, ${pushed.errors} errors (target 0), api ${alive ? 'up' : 'DOWN'}, then ${after.statusCode}`,
    )
    await dispatcher.close()
    stop(api)
    stop(worker)
    await Promise.all([api.exit, worker.exit])
  } finally {
    for (const fn of cleanups) await fn()
  }
}

function stop(service: Service): void {
  if (service.child.exitCode === null) service.child.kill('SIGTERM')
}

await main()

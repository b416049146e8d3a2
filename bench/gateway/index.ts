import { closeSync, mkdirSync, openSync, rmSync, statSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { request } from 'undici'
import { type AutocannonResult, loadTest } from '../lib/autocannon.ts'
import { hostBusySeconds } from '../lib/host-cpu.ts'
import { note, reporter, setting } from '../lib/report.ts'
import { median, percentile } from '../lib/stats.ts'
import { firstTokenProbe } from './first-token.ts'
import { type ServerProcess, type Stats, startServer } from './processes.ts'

// `pnpm bench gateway`: what the Fastify gateway costs in front of Ollama, against an in-run floor.
//
// Layout: four server processes, each with its own event loop, started once: the Ollama stand-in
// (upstream), a minimal node:http + undici pass-through proxy to it, the gateway (buildApp with
// LOG_LEVEL=info, the production default; its pino lines go to a file, as they go to a pipe in a
// container) and the same gateway with LOG_LEVEL=warn. This process is the client (autocannon,
// then the first-token probe) and does nothing else while a load runs, so it is in effect the
// load generator's own process. Nothing is pinned: client, middle process and upstream share the
// machine's cores, as on a small node ("unpinned" in shared/reference/performance-notes.md §4).
//
// 1. Non-streamed generate under load: autocannon -c 50. Direct once, then rounds of
//    proxy / gateway / gateway_warn (order rotated each round), each run after a warm-up; the
//    medians are the figures and every run is printed too. For each run the middle process's
//    CPU time per request is measured (from its own process.cpuUsage), which is steadier than
//    req/s on a shared machine, and so is the CPU other programs took meanwhile.
// 2. Time to first streamed token at concurrency 1: sequential streamed requests, interleaved
//    across the targets, p50 and p99.
//
// Knobs (environment): BENCH_GATEWAY_DURATION_S (8), BENCH_GATEWAY_WARMUP_S (2),
// BENCH_GATEWAY_ROUNDS (3), BENCH_GATEWAY_CONNECTIONS (50), BENCH_GATEWAY_FIRST_TOKEN_REQUESTS
// (500), BENCH_GATEWAY_CPU_PROF=DIR (--cpu-prof of proxy and gateways into DIR).

const BENCH = 'gateway'
const report = reporter(BENCH)
const log = (message: string) => note(BENCH, message)

const DURATION_S = setting('BENCH_GATEWAY_DURATION_S', 8)
const WARMUP_S = setting('BENCH_GATEWAY_WARMUP_S', 2)
const REWARM_S = Math.min(1, WARMUP_S)
const ROUNDS = Math.round(setting('BENCH_GATEWAY_ROUNDS', 3))
const CONNECTIONS = Math.round(setting('BENCH_GATEWAY_CONNECTIONS', 50))
const FIRST_TOKEN_REQUESTS = Math.round(setting('BENCH_GATEWAY_FIRST_TOKEN_REQUESTS', 500))
const FIRST_TOKEN_WARMUP = 100
const CPU_PROF_DIR = process.env.BENCH_GATEWAY_CPU_PROF

// Ollama (and its stand-in) needs a model name; the gateway would fill in CHAT_MODEL. The same
// bytes go to every target so only the path differs.
const GENERATE_BODY = JSON.stringify({ model: 'llama3.2', prompt: 'hi', stream: false })
const EXPECTED_RESPONSE = 'The sky is blue.'

type Key = 'direct' | 'proxy' | 'gateway' | 'gateway_warn'

type Target = {
  key: Key
  url: string
  /** The process between client and upstream (none for direct). */
  middle?: ServerProcess
  /** The gateway's log file, to count bytes logged per request. */
  logPath?: string
}

type Run = {
  rps: number
  p50: number
  p99: number
  /** CPU time per request of the middle process (of the upstream, for direct), µs. */
  cpuUsPerReq: number
  logBytesPerReq?: number
  /** Cores' worth of CPU other programs used during the run (undefined without /proc/stat). */
  backgroundCores?: number
}

type Bench = { targets: Target[]; upstream: ServerProcess; servers: ServerProcess[] }

async function main(): Promise<void> {
  const started = performance.now()
  const work = await mkdtemp(join(tmpdir(), 'cnfl-bench-gateway-'))
  // Also on Ctrl-C / SIGTERM, which exit from processes.ts without reaching `finally` below.
  const removeWork = () => rmSync(work, { recursive: true, force: true })
  process.once('exit', removeWork)
  const fds: number[] = []
  const servers: ServerProcess[] = []
  try {
    const profDir = CPU_PROF_DIR ? resolve(CPU_PROF_DIR) : undefined
    if (profDir) mkdirSync(profDir, { recursive: true })
    const execArgv = profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []

    const upstream = await startServer('upstream', { role: 'upstream' })
    servers.push(upstream)
    const proxy = await startServer(
      'proxy',
      { role: 'proxy', upstream: upstream.url },
      { execArgv },
    )
    servers.push(proxy)
    const targets: Target[] = [
      { key: 'direct', url: upstream.url },
      { key: 'proxy', url: proxy.url, middle: proxy },
    ]
    for (const [key, level] of [
      ['gateway', 'info'],
      ['gateway_warn', 'warn'],
    ] as const) {
      const logPath = join(work, `${key}.log`)
      const fd = openSync(logPath, 'a')
      fds.push(fd)
      const middle = await startServer(
        key,
        {
          role: 'gateway',
          upstream: upstream.url,
          logLevel: level,
          lancedbUri: join(work, `lancedb-${key}`),
        },
        { stdout: fd, execArgv },
      )
      servers.push(middle)
      targets.push({ key, url: middle.url, middle, logPath })
    }
    for (const server of servers) log(`${server.name}: ${server.url} (pid ${server.pid})`)
    for (const target of targets) await checkTarget(target)

    const bench: Bench = { targets, upstream, servers }
    await throughput(bench)
    await firstToken(targets)
    log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`)
  } finally {
    await Promise.allSettled(servers.map((server) => server.stop()))
    for (const fd of fds) closeSync(fd)
    removeWork()
    if (CPU_PROF_DIR) log(`CPU profiles (named by the pids above) in ${resolve(CPU_PROF_DIR)}`)
  }
}

/** A generate answered as Ollama would (plain and streamed): the load measures real work. */
async function checkTarget(target: Target): Promise<void> {
  const { statusCode, body } = await request(`${target.url}/api/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: GENERATE_BODY,
  })
  const text = await body.text()
  let answer: { response?: unknown; done?: unknown } = {}
  try {
    answer = JSON.parse(text)
  } catch {
    // reported below
  }
  if (statusCode !== 200 || answer.done !== true || answer.response !== EXPECTED_RESPONSE) {
    throw new Error(`${target.key}: unexpected answer to generate: ${statusCode} ${text}`)
  }
  const probe = firstTokenProbe(target.url)
  try {
    await probe.once()
  } finally {
    await probe.close()
  }
}

// ---------------------------------------------------------------------------------------------
// 1. Non-streamed generate under load

async function throughput(bench: Bench): Promise<void> {
  const { targets } = bench
  const byKey = (key: Key) => targets.find((target) => target.key === key) as Target
  const runs = new Map<Key, Run[]>(targets.map((target) => [target.key, []]))
  const warmed = new Set<Key>()
  const measure = async (target: Target) => {
    const warmup = warmed.has(target.key) ? REWARM_S : WARMUP_S
    warmed.add(target.key)
    const run = await measureRun(bench, target, warmup)
    runs.get(target.key)?.push(run)
    log(
      `${target.key.padEnd(12)} ${run.rps.toFixed(0).padStart(6)} req/s  p50 ${run.p50} ms  ` +
        `p99 ${run.p99} ms  ${run.cpuUsPerReq.toFixed(0)} µs CPU/req` +
        (run.logBytesPerReq === undefined ? '' : `  ${run.logBytesPerReq.toFixed(0)} log B/req`) +
        (run.backgroundCores === undefined
          ? ''
          : `  other programs: ${run.backgroundCores.toFixed(2)} cores`),
    )
  }

  log(
    `non-streamed generate: autocannon -c ${CONNECTIONS}, ${DURATION_S} s a run after a warm-up ` +
      `(${WARMUP_S} s the first time, ${REWARM_S} s later); direct once, then ${ROUNDS} rounds ` +
      'of proxy / gateway / gateway_warn',
  )
  await measure(byKey('direct'))
  const order: Key[] = ['proxy', 'gateway', 'gateway_warn']
  for (let round = 0; round < ROUNDS; round++) {
    for (let j = 0; j < order.length; j++) {
      await measure(byKey(order[(round + j) % order.length] as Key))
    }
  }

  const rps = new Map<Key, number>()
  for (const target of targets) {
    const list = runs.get(target.key) ?? []
    const { key } = target
    rps.set(key, median(list.map((run) => run.rps)))
    report(`generate_rps_${key}`, rps.get(key) as number, 'req/s')
    report(`generate_p50_ms_${key}`, median(list.map((run) => run.p50)), 'ms')
    report(`generate_p99_ms_${key}`, median(list.map((run) => run.p99)), 'ms')
    const cpuName = key === 'direct' ? 'upstream' : key
    report(`generate_cpu_us_per_req_${cpuName}`, median(list.map((run) => run.cpuUsPerReq)), 'µs')
    const logged = list.flatMap((run) =>
      run.logBytesPerReq === undefined ? [] : [run.logBytesPerReq],
    )
    if (logged.length > 0) report(`log_bytes_per_req_${key}`, median(logged), 'B')
    list.forEach((run, i) => {
      report(`generate_rps_${key}_run${i + 1}`, run.rps, 'req/s')
      report(`generate_p99_ms_${key}_run${i + 1}`, run.p99, 'ms')
      report(`generate_cpu_us_per_req_${cpuName}_run${i + 1}`, run.cpuUsPerReq, 'µs')
    })
  }
  const proxyRps = rps.get('proxy') as number
  const ratio = (rps.get('gateway') as number) / proxyRps
  report('generate_rps_ratio', ratio, 'ratio')
  report('generate_rps_ratio_gateway_warn', (rps.get('gateway_warn') as number) / proxyRps, 'ratio')
  report('generate_rps_ratio_proxy_vs_direct', proxyRps / (rps.get('direct') as number), 'ratio')
  // The ratio round by round (a gateway run ÷ the proxy run of the same round): its spread
  // shows how much of the headline ratio is noise.
  const proxyRuns = runs.get('proxy') ?? []
  runs.get('gateway')?.forEach((run, i) => {
    const base = proxyRuns[i]
    if (base) report(`generate_rps_ratio_run${i + 1}`, run.rps / base.rps, 'ratio')
  })
  // CPU per request, proxy ÷ gateway: the throughput ratio one middle core would give if the
  // middle process were the only bottleneck (less sensitive to other programs' load).
  const cpu = (key: Key) => median((runs.get(key) ?? []).map((run) => run.cpuUsPerReq))
  report('generate_cpu_ratio', cpu('proxy') / cpu('gateway'), 'ratio')
  report('generate_cpu_ratio_gateway_warn', cpu('proxy') / cpu('gateway_warn'), 'ratio')
  const background = [...runs.values()]
    .flat()
    .flatMap((run) => (run.backgroundCores === undefined ? [] : [run.backgroundCores]))
  if (background.length > 0) {
    report('background_cpu_cores_median', median(background), 'cores')
    report('background_cpu_cores_max', Math.max(...background), 'cores')
  }
  log(
    `generate_rps_ratio (gateway ÷ minimal proxy) = ${ratio.toFixed(3)} (target >= 0.8); ` +
      `CPU/req proxy ${cpu('proxy').toFixed(0)} µs, gateway ${cpu('gateway').toFixed(0)} µs, ` +
      `gateway at warn ${cpu('gateway_warn').toFixed(0)} µs`,
  )
}

type Snapshot = {
  at: number
  host?: number
  servers: Stats[]
  client: number
  logBytes: number
}

async function snapshot(bench: Bench, target: Target): Promise<Snapshot> {
  const servers = await Promise.all(bench.servers.map((server) => server.stats()))
  const own = process.cpuUsage()
  return {
    at: performance.now(),
    host: hostBusySeconds(),
    servers,
    client: own.user + own.system,
    logBytes: target.logPath ? statSync(target.logPath).size : 0,
  }
}

async function measureRun(bench: Bench, target: Target, warmupS: number): Promise<Run> {
  const load = (duration: number) =>
    loadTest({
      url: `${target.url}/api/generate`,
      connections: CONNECTIONS,
      duration,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: GENERATE_BODY,
    })
  assertClean(target, await load(warmupS))
  const before = await snapshot(bench, target)
  const result = await load(DURATION_S)
  const after = await snapshot(bench, target)
  assertClean(target, result)

  const index = bench.servers.indexOf(target.middle ?? bench.upstream)
  const a = before.servers[index] as Stats
  const b = after.servers[index] as Stats
  const served = Math.max(1, b.served - a.served)
  let backgroundCores: number | undefined
  if (before.host !== undefined && after.host !== undefined) {
    let ownMicros = after.client - before.client
    after.servers.forEach((stats, i) => {
      ownMicros += stats.cpuMicros - (before.servers[i] as Stats).cpuMicros
    })
    const seconds = (after.at - before.at) / 1000
    backgroundCores = Math.max(0, (after.host - before.host - ownMicros / 1e6) / seconds)
  }
  return {
    rps: result.requests.total / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    cpuUsPerReq: (b.cpuMicros - a.cpuMicros) / served,
    logBytesPerReq: target.logPath ? (after.logBytes - before.logBytes) / served : undefined,
    backgroundCores,
  }
}

function assertClean(target: Target, result: AutocannonResult): void {
  const { non2xx, errors, timeouts } = result
  if (non2xx > 0 || errors > 0 || timeouts > 0 || result.requests.total === 0) {
    throw new Error(
      `${target.key}: load run not clean: ${result.requests.total} answered, ${non2xx} non-2xx, ` +
        `${errors} errors, ${timeouts} timeouts`,
    )
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Time to first streamed token

async function firstToken(targets: Target[]): Promise<void> {
  log(
    `first token: ${FIRST_TOKEN_WARMUP} warm-up + ${FIRST_TOKEN_REQUESTS} sequential streamed ` +
      'requests a target, interleaved across targets',
  )
  const probes = targets.map((target) => firstTokenProbe(target.url))
  const samples = targets.map(() => [] as number[])
  try {
    for (let i = 0; i < FIRST_TOKEN_WARMUP + FIRST_TOKEN_REQUESTS; i++) {
      // Rotate which target goes first, so none always follows the same neighbour.
      for (let j = 0; j < probes.length; j++) {
        const index = (i + j) % probes.length
        const elapsed = await (probes[index] as (typeof probes)[number]).once()
        if (i >= FIRST_TOKEN_WARMUP) samples[index]?.push(elapsed)
      }
    }
  } finally {
    await Promise.all(probes.map((probe) => probe.close()))
  }
  const p50 = new Map<Key, number>()
  targets.forEach((target, index) => {
    const values = samples[index] ?? []
    p50.set(target.key, percentile(values, 50))
    report(`first_token_ms_p50_${target.key}`, percentile(values, 50), 'ms')
    report(`first_token_ms_p99_${target.key}`, percentile(values, 99), 'ms')
  })
  const added = (key: Key) => (p50.get(key) as number) - (p50.get('direct') as number)
  report('first_token_added_ms_p50', added('gateway'), 'ms')
  report('first_token_added_ms_p50_proxy', added('proxy'), 'ms')
  report('first_token_added_ms_p50_gateway_warn', added('gateway_warn'), 'ms')
  log(
    `first token p50 added over direct: gateway ${added('gateway').toFixed(3)} ms ` +
      `(target <= 1 ms), gateway at warn ${added('gateway_warn').toFixed(3)} ms, ` +
      `minimal proxy ${added('proxy').toFixed(3)} ms`,
  )
}

try {
  await main()
} catch (err) {
  process.stderr.write(`[${BENCH}] failed: ${(err as Error).stack ?? err}\n`)
  process.exitCode = 1
}
// Idle keep-alive sockets or a stray timer must not keep a finished benchmark alive.
process.exit()

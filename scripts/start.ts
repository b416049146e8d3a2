// `pnpm start`: the whole system on one machine with embedded defaults. Validates the
// configuration, starts a local redis-server when REDIS_URL points at this machine and nothing
// answers there, then runs the api and the worker and prints where to find them.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { connect } from 'node:net'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  type ApiConfig,
  authEnabled,
  ConfigError,
  loadApiConfig,
  loadWorkerConfig,
  ollamaEndpoint,
  ollamaTarget,
  redactUrl,
  secretsKeyFile,
  workerProcessEnv,
} from '@confluence-bot/shared'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const say = (line = '') => process.stderr.write(`${line}\n`)

function loadConfigs() {
  try {
    return { api: loadApiConfig(), worker: loadWorkerConfig() }
  } catch (err) {
    if (err instanceof ConfigError) {
      say(`confluence-bot: ${err.message}`)
      process.exit(1)
    }
    throw err
  }
}

const canConnect = (host: string, port: number, timeoutMs = 1_000) =>
  new Promise<boolean>((done) => {
    const socket = connect({ host, port })
    const finish = (ok: boolean) => {
      socket.destroy()
      done(ok)
    }
    socket.setTimeout(timeoutMs, () => finish(false))
    socket.once('connect', () => finish(true))
    socket.once('error', () => finish(false))
  })

const running = (child: ChildProcess) => child.exitCode === null && child.signalCode === null

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]'])
const children: ChildProcess[] = []
let ownRedis: ChildProcess | undefined
let stopping = false

async function ensureRedis(redisUrl: string): Promise<void> {
  const url = new URL(redisUrl)
  const port = Number(url.port || 6379)
  if (await canConnect(url.hostname, port)) return
  if (!LOOPBACK.has(url.hostname)) {
    say(`confluence-bot: Redis at REDIS_URL=${redactUrl(redisUrl)} is not reachable.`)
    process.exit(1)
  }
  // One data directory per port: two instances on one checkout never share (or corrupt) an AOF.
  const dir = join(root, 'data', port === 6379 ? 'redis' : `redis-${port}`)
  mkdirSync(dir, { recursive: true })
  say(`confluence-bot: starting redis-server on 127.0.0.1:${port} (data in ${dir})`)
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir]
  args.push('--appendonly', 'yes', '--maxmemory-policy', 'noeviction')
  if (url.password) args.push('--requirepass', decodeURIComponent(url.password))
  // Its own process group: a terminal's Ctrl-C reaches the api and the worker, which still need
  // Redis to finish their jobs; it is stopped last, by stop().
  const redis = spawn('redis-server', args, {
    stdio: ['ignore', 'ignore', 'inherit'],
    detached: true,
  })
  process.once('exit', () => {
    if (running(redis)) redis.kill('SIGTERM')
  })
  redis.once('error', (err) => {
    say(`confluence-bot: cannot run redis-server (${err.message}); run ./confluence-bot start`)
    process.exit(1)
  })
  ownRedis = redis
  for (let i = 0; i < 50; i++) {
    if (await canConnect('127.0.0.1', port)) return
    await new Promise((r) => setTimeout(r, 100))
  }
  say('confluence-bot: redis-server did not start')
  process.exit(1)
}

function run(name: string, entry: string, env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const child = spawn(process.execPath, ['--conditions=@confluence-bot/source', entry], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
    env,
  })
  child.once('exit', (code, signal) => {
    if (stopping) return
    say(`confluence-bot: the ${name} stopped (${signal ?? `exit ${code}`}); stopping everything`)
    void stop(1)
  })
  children.push(child)
  return child
}

/**
 * Stops the api and the worker (they drain), then Redis. `signalled`: they were sent the signal
 * already, as a terminal's Ctrl-C reaches the whole process group; a second one would make them
 * exit at once instead of finishing their work, so they are waited for, and signalled only if
 * still running after SHUTDOWN_GRACE_MS (the signal was for this process alone).
 */
async function stop(code: number, signalled = false) {
  if (stopping) return
  stopping = true
  const exited = (child: ChildProcess) =>
    running(child) ? new Promise((r) => child.once('exit', r)) : Promise.resolve()
  await Promise.all(
    children.map(async (child) => {
      if (!running(child)) return
      const late = signalled ? setTimeout(() => child.kill('SIGTERM'), graceMs + 1_000) : undefined
      if (!signalled) child.kill('SIGTERM')
      await exited(child)
      clearTimeout(late)
    }),
  )
  if (ownRedis && running(ownRedis)) {
    ownRedis.kill('SIGTERM')
    await exited(ownRedis)
  }
  process.exit(code)
}

async function waitForApi(config: ApiConfig): Promise<boolean> {
  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST
  for (let i = 0; i < 100; i++) {
    if (await canConnect(host, config.PORT, 200)) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return false
}

async function ollamaReachable(url: string): Promise<boolean> {
  const target = ollamaTarget(url)
  try {
    const res = await fetch(ollamaEndpoint(target, '/api/version'), {
      headers: target.headers,
      signal: AbortSignal.timeout(2_000),
    })
    return res.ok
  } catch {
    return false
  }
}

const isRemoteUri = (uri: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(uri)

// Source credentials are encrypted with SECRETS_KEY. A laptop install has nobody to set one, so
// the first start creates it in the data directory and every later start reads it back; the api
// and the worker get it through their environment. A key set in the environment wins. Read
// before the settings are checked: SECRETS_KEY_PREVIOUS alone (a rotation) needs it.
if ((process.env.SECRETS_KEY ?? '') === '') {
  try {
    const file = join(root, 'data', 'secrets.key')
    const { key, created } = secretsKeyFile(file)
    process.env.SECRETS_KEY = key
    if (created)
      say(
        `confluence-bot: created ${file}, the key of stored source credentials: back it up with Redis`,
      )
  } catch (err) {
    say(`confluence-bot: ${(err as Error).message}`)
    process.exit(1)
  }
}

const { api } = loadConfigs()
if (!isRemoteUri(api.LANCEDB_URI)) {
  const dir = isAbsolute(api.LANCEDB_URI) ? api.LANCEDB_URI : join(root, api.LANCEDB_URI)
  mkdirSync(dir, { recursive: true })
}
const graceMs = api.SHUTDOWN_GRACE_MS
// Ctrl-C: the terminal sends SIGINT to every process of the group. SIGTERM (from a process
// manager, to this process) is passed on.
process.once('SIGINT', () => void stop(0, true))
process.once('SIGTERM', () => void stop(0))

await ensureRedis(api.REDIS_URL)
run('api', 'services/api/src/server.ts')
run('worker', 'services/worker/src/main.ts', workerProcessEnv(process.env))

if (await waitForApi(api)) {
  const host = api.HOST === '0.0.0.0' || api.HOST === '::' ? '127.0.0.1' : api.HOST
  const base = `http://${host.includes(':') ? `[${host}]` : host}:${api.PORT}`
  const ollamaOk = await ollamaReachable(api.OLLAMA_URL)
  say()
  say('confluence-bot is running')
  say(`  Swagger UI       ${base}/docs`)
  say(`  OpenAPI          ${base}/docs/json`)
  say(`  Queue dashboard  ${base}/admin/queues`)
  say(`  Health           ${base}/api/health`)
  say(
    `  Ollama           ${redactUrl(api.OLLAMA_URL)} ${ollamaOk ? '(reachable)' : '(NOT reachable: chat answers 503 until it is)'}`,
  )
  if (!authEnabled(api)) {
    say()
    say('  !! AUTH IS OFF: no API_KEYS / ADMIN_API_KEYS set. Anyone who can reach the port can')
    say('  !! use every route. Fine on a laptop; set keys before exposing it.')
  }
  say()
  say('Ctrl-C stops everything.')
}

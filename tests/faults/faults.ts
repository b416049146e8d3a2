import { spawn } from 'node:child_process'
import {
  defaultJobOptions,
  JobName,
  QUEUE_PREFIX,
  QueueName,
  syncJobOptions,
  workerProcessEnv,
} from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import type { Rig } from '../helpers/ingest.ts'
import { runService, type Service } from '../helpers/process.ts'

// What the fault suite's files share: the long/short switch, a seeded random source whose seed
// is printed (a failure is replayed with FAULTS_SEED=<seed>), worker and api processes on a
// rig, and a Redis that can be stopped and started again without losing its data.

type T = { teardown(fn: () => unknown): void; comment(...args: unknown[]): void }

/** `FAULTS_LONG=1`: the long variants (issue 13's sizes) instead of the short CI ones. */
export const LONG = process.env.FAULTS_LONG === '1'

/** mulberry32 from a seed: every random fault of a run replays from the seed it printed. */
export function seeded(t: T, name: string): () => number {
  // CI replays one fixed run; `FAULTS_SEED=random` (or any number) explores others.
  const given = process.env.FAULTS_SEED ?? '20261205'
  const seed = given === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(given)
  t.comment(`${name}: FAULTS_SEED=${seed}`)
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let x = state
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32
  }
}

/** A worker process on the rig, with the environment the image and `pnpm start` give it. */
export function workerProcess(t: T, rig: Rig, env: Record<string, string> = {}): Service {
  return runService(
    t,
    'services/worker/src/main.ts',
    workerProcessEnv({ ...rig.env, LOG_LEVEL: 'info', WORKER_CONCURRENCY: '1', ...env }),
  )
}

/**
 * Queues a sync of `source` as the api does, with the contract's attempts and backoff (the rig's
 * `enqueue` leaves them out): a fault that fails one attempt is retried, as in production.
 */
export async function enqueueAsApi(t: T, rig: Rig, source: string): Promise<string> {
  const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  const job = await queue.add(
    JobName.sync,
    { source_id: source },
    { ...structuredClone(defaultJobOptions), ...syncJobOptions(source) },
  )
  return job.id as string
}

/** An api process on the rig's Redis and index; its URL once it listens. */
export async function apiProcess(
  t: T,
  rig: Rig,
  env: Record<string, string>,
): Promise<{ api: Service; url: string }> {
  const api = runService(t, 'services/api/src/server.ts', {
    PORT: '0',
    LOG_LEVEL: 'info',
    REDIS_URL: rig.redis.url,
    OLLAMA_URL: rig.ollama.url,
    LANCEDB_URI: rig.lancedbUri,
    EXPORTS_DIR: rig.config.EXPORTS_DIR,
    CONFLUENCE_ALLOWED_HOSTS: '127.0.0.1',
    // Back-pressure off: on a busy 2-core CI machine a slow second (the api's own start among
    // them) would answer 503 overloaded, which is not the fault these tests inject.
    PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0',
    PRESSURE_MAX_EVENT_LOOP_UTILIZATION: '0',
    ...env,
  })
  const line = await api.waitFor(/Server listening at/, 30_000)
  const url = /listening at (http:\/\/\S+?)"/.exec(line)?.[1]
  if (url === undefined) throw new Error(`no address in ${line}`)
  return { api, url }
}

/** Polls `check` until it holds; throws naming `what` after the timeout. */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 60_000,
  everyMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/**
 * Turns the rig's Redis into one that survives a stop: append-only file on, every write synced.
 * `stop()` shuts it down as an operator would (SIGTERM: the AOF is flushed), `start()` starts a
 * new redis-server on the same port and directory, which loads it back.
 */
export async function durableRedis(rig: Rig, client: Redis) {
  // The test's own connections see the outage too: they retry, nothing to report.
  client.on('error', () => {})
  const dir = ((await client.config('GET', 'dir')) as string[])[1] as string
  await client.config('SET', 'appendfsync', 'always')
  await client.config('SET', 'appendonly', 'yes')
  await waitUntil('the first AOF rewrite', async () =>
    /aof_rewrite_in_progress:0/.test(await client.info('persistence')),
  )
  let current = rig.redis.process
  const args = [
    '--port',
    String(rig.redis.port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'yes',
    '--appendfsync',
    'always',
    '--maxmemory-policy',
    'noeviction',
  ]
  // Stopped where the rig stops its Redis: after the test's own connections have quit (a kill
  // in a teardown of its own ran first, and their quit() failed on a closed connection).
  const stopRig = rig.redis.stop
  rig.redis.stop = async () => {
    if (current.exitCode === null && current.signalCode === null) {
      const exited = new Promise((resolve) => current.once('exit', resolve))
      current.kill('SIGKILL')
      await exited
    }
    await stopRig()
  }
  return {
    async stop() {
      const exited = new Promise((resolve) => current.once('exit', resolve))
      current.kill('SIGTERM')
      await exited
    },
    async start() {
      const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
      current = child
      let out = ''
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString()
          if (out.includes('Ready to accept connections')) resolve()
        })
        child.once('exit', (code) => reject(new Error(`redis-server exited ${code}: ${out}`)))
      })
    },
  }
}

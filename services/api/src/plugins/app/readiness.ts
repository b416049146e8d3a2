import { once } from 'node:events'
import { redactUrl } from '@confluence-bot/shared'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import type { Check, Health } from '../../schemas/health.ts'

/**
 * How long one round of checks answers every readiness request. `/api/health` takes no key and
 * is exempt from the rate limit and from back-pressure (a probe must not be shed), so without
 * this each request would be one Redis PING, one LanceDB listing and one Ollama call, holding a
 * socket of the pool answers use: a flood of probes would be a flood on Ollama. A second is
 * short against any probe period (and against the 5 s in which the fault suite wants readiness
 * back after Redis returns), and long enough that a flood costs at most one round per second.
 */
export const READINESS_CACHE_MS = 1_000

type Checks = { redis: Check; lancedb: Check; ollama: Check }

declare module 'fastify' {
  interface FastifyInstance {
    readiness: {
      /** Flipped when shutdown starts, so readiness fails and the load balancer drains us. */
      shuttingDown: boolean
      /**
       * The readiness answer: the latest round of checks if it finished less than
       * READINESS_CACHE_MS ago, else the round under way (one at a time, shared by every
       * request that arrives while it runs), else a new one.
       */
      check(): Promise<Health>
    }
  }
}

/** Runs one readiness check with a time limit, reporting its latency either way. */
async function probe(
  timeoutMs: number,
  run: (signal: AbortSignal) => Promise<string | undefined>,
): Promise<Check> {
  const started = performance.now()
  const signal = AbortSignal.timeout(timeoutMs)
  const timedOut = new Promise<never>((_, reject) =>
    signal.addEventListener('abort', () => reject(new Error(`no answer within ${timeoutMs} ms`))),
  )
  const latency = () => Math.round((performance.now() - started) * 100) / 100
  try {
    const version = await Promise.race([run(signal), timedOut])
    const check: Check = { status: 'ok', latency_ms: latency() }
    if (version !== undefined) check.version = version
    return check
  } catch (err) {
    return { status: 'down', latency_ms: latency(), error: (err as Error).message }
  }
}

/** Waits while the client is (re)connecting, so a check right after start is not a false alarm. */
async function connected(redis: Redis, signal: AbortSignal): Promise<void> {
  if (
    redis.status !== 'connecting' &&
    redis.status !== 'connect' &&
    redis.status !== 'reconnecting'
  ) {
    return
  }
  await Promise.race([
    once(redis, 'ready', { signal }).catch(() => undefined),
    once(redis, 'end', { signal }).catch(() => undefined),
  ])
}

/** One round: Redis, the index and Ollama, at once, each within HEALTH_TIMEOUT_MS. */
async function checkAll(fastify: FastifyInstance): Promise<Checks> {
  const timeout = fastify.config.HEALTH_TIMEOUT_MS
  const [redis, lancedb, ollama] = await Promise.all([
    probe(timeout, async (signal) => {
      await connected(fastify.redis, signal)
      await fastify.redis.ping().catch((err: Error) => {
        const url = redactUrl(fastify.config.REDIS_URL)
        throw new Error(`Redis at REDIS_URL=${url} is not reachable (${err.message})`)
      })
      return undefined
    }),
    probe(timeout, async () => {
      const db = await fastify.lancedb.connection()
      await db.tableNames()
      return undefined
    }),
    probe(timeout, async (signal) => {
      const res = await fastify.ollama.get('/api/version', signal).catch((err: unknown) => {
        throw fastify.ollama.unavailable(err)
      })
      if (res.statusCode !== 200) {
        await res.body.dump()
        throw new Error(`Ollama at OLLAMA_URL=${fastify.ollama.url} answered ${res.statusCode}`)
      }
      const body = (await res.body.json()) as { version?: string }
      return body.version
    }),
  ])
  return { redis, lancedb, ollama }
}

/** Only Ollama down still serves (searches fall back to keywords); Redis or the index down does not. */
function statusOf(checks: Checks, shuttingDown: boolean): Health['status'] {
  if (checks.redis.status === 'down' || checks.lancedb.status === 'down' || shuttingDown) {
    return 'down'
  }
  return checks.ollama.status === 'down' ? 'degraded' : 'ok'
}

async function readiness(fastify: FastifyInstance) {
  let latest: { checks: Checks; at: number } | undefined
  let underWay: Promise<Checks> | undefined

  const round = async (): Promise<Checks> => {
    try {
      const checks = await checkAll(fastify)
      // Fresh from when the round ended: a slow round (a check at its timeout) is not stale
      // on arrival.
      latest = { checks, at: performance.now() }
      return checks
    } finally {
      underWay = undefined
    }
  }

  const state = {
    shuttingDown: false,
    async check(): Promise<Health> {
      let checks: Checks
      if (latest !== undefined && performance.now() - latest.at < READINESS_CACHE_MS) {
        checks = latest.checks
      } else {
        underWay ??= round()
        checks = await underWay
      }
      // Shutting down is read now, not from the round: draining starts with the next probe.
      return { status: statusOf(checks, state.shuttingDown), checks }
    },
  }
  fastify.decorate('readiness', state)
  fastify.addHook('preClose', async () => {
    fastify.readiness.shuttingDown = true
  })
}

export default fp(readiness, { name: 'readiness', fastify: '5.x' })

import { once } from 'node:events'
import { redactUrl } from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Redis } from 'ioredis'
import { type Check, type Health, HealthSchema, LiveSchema } from '../../schemas/health.ts'

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

const health: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config } = fastify
  const redisUrl = redactUrl(config.REDIS_URL)

  fastify.get(
    '/health',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness: Redis, the LanceDB index and Ollama, each with its latency',
        description:
          '`ok` when all answer; `degraded` (200) when only Ollama is down; `down` (503) when ' +
          'Redis or the index is unusable, or the service is shutting down.',
        security: [],
        response: { 200: HealthSchema, 503: HealthSchema },
      },
    },
    async (_request, reply) => {
      const timeout = config.HEALTH_TIMEOUT_MS
      const [redis, lancedb, ollama] = await Promise.all([
        probe(timeout, async (signal) => {
          await connected(fastify.redis, signal)
          await fastify.redis.ping().catch((err: Error) => {
            throw new Error(`Redis at REDIS_URL=${redisUrl} is not reachable (${err.message})`)
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
      let status: Health['status'] = 'ok'
      if (ollama.status === 'down') status = 'degraded'
      if (redis.status === 'down' || lancedb.status === 'down' || fastify.readiness.shuttingDown) {
        status = 'down'
      }
      const body: Health = { status, checks: { redis, lancedb, ollama } }
      return reply.code(status === 'down' ? 503 : 200).send(body)
    },
  )

  fastify.get(
    '/health/live',
    {
      schema: {
        tags: ['health'],
        summary: 'Liveness: the process answers',
        security: [],
        response: { 200: LiveSchema },
      },
    },
    async () => ({ status: 'ok' as const }),
  )
}

export default health

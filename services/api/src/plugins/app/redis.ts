import { redactUrl } from '@confluence-bot/shared'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis
  }
}

// The API's Redis connection fails fast: with the offline queue off, a command sent while Redis
// is down errors at once (and the caller answers 503) instead of hanging an HTTP request.
async function redis(fastify: FastifyInstance) {
  const client = new Redis(fastify.config.REDIS_URL, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    retryStrategy: (attempt) => Math.min(attempt * 250, 2_000),
  })
  let reported = false
  client.on('error', (err: NodeJS.ErrnoException) => {
    if (reported) return
    reported = true
    fastify.log.warn(
      { code: err.code },
      `Redis at REDIS_URL=${redactUrl(fastify.config.REDIS_URL)} is unreachable; retrying`,
    )
  })
  client.on('ready', () => {
    reported = false
    fastify.log.debug('Redis connection ready')
  })
  fastify.decorate('redis', client)
  // Give the connection a moment at boot so the first requests find it open; a Redis that is
  // down does not stop the api (its routes answer 503 and readiness says so).
  fastify.addHook('onReady', async () => {
    /* c8 ignore next: the connection rarely wins the race against the plugins' boot */
    if (client.status === 'ready') return
    // A refused connection is an answer too: waiting longer would not open it.
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        client.off('ready', done)
        client.off('error', done)
        resolve()
      }
      const timer = setTimeout(done, 2_000)
      client.once('ready', done)
      client.once('error', done)
    })
  })
  fastify.addHook('onClose', async () => {
    await client.quit().catch(() => client.disconnect())
  })
}

export default fp(redis, { name: 'redis', dependencies: ['config'], fastify: '5.x' })

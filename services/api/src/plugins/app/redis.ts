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
  fastify.addHook('onClose', async () => {
    await client.quit().catch(() => client.disconnect())
  })
}

export default fp(redis, { name: 'redis', dependencies: ['config'], fastify: '5.x' })

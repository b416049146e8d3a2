import { Redis } from 'ioredis'

/**
 * A Redis client for one command of the CLI: it connects when asked, fails at once instead of
 * queueing or retrying, gives up on a command unanswered after 5 s, and never reports errors on its own (the caller reports them, naming
 * REDIS_URL): a command must not wait for a Redis that is not there.
 */
export function oneShotRedis(url: string): Redis {
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 3_000,
    // A Redis that accepts the connection and never answers must not hang the command either.
    commandTimeout: 5_000,
    retryStrategy: () => null,
  })
  redis.on('error', () => {})
  return redis
}

import { AppError, ErrorCode } from '@confluence-bot/shared'
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { callerOf } from '../../lib/caller.ts'

// Per-key request rate limits, counted in the api's Redis so that every replica shares one
// budget per key (RATE_LIMIT_PER_MINUTE; 0 turns it off). The counter is keyed by the key's
// owner label, never the key: Redis holds no secret. Requests without a key count per IP.
//
// The check runs as a route hook, after the scope's requireRole hook has named the key: a
// request refused for its key (401/403) is answered before it and not counted.
//
// Redis down: the limit fails open (the request is served, uncounted). A rate limit shares the
// model fairly; it guards no data, since keys and roles are checked without Redis. Failing
// closed would turn a Redis outage into a full outage of chat, which needs no Redis, while
// readiness already reports Redis down. What protects Ollama from a flood in the meantime is
// local to each process and needs no Redis: the answer concurrency caps (answer-limits.ts).

/** Route prefixes that are limited: the API's routes. The page's and the docs' files are not. */
const LIMITED = ['/api/', '/v1/', '/ollama', '/mcp', '/admin']

/** Probes are never limited: an orchestrator must always see the api's state. */
const PROBES = '/api/health'

export function isLimited(url: string): boolean {
  return !url.startsWith(PROBES) && LIMITED.some((prefix) => url.startsWith(prefix))
}

const MINUTE = 60_000

async function rateLimits(fastify: FastifyInstance) {
  const max = fastify.config.RATE_LIMIT_PER_MINUTE
  if (max === 0) return
  await fastify.register(rateLimit, {
    global: true,
    max,
    timeWindow: MINUTE,
    redis: fastify.redis,
    nameSpace: 'ratelimit:',
    keyGenerator: (request: FastifyRequest) => callerOf(request),
    // The limit is a route hook, so only routes get here, each with its URL.
    allowList: (request: FastifyRequest) => !isLimited(request.routeOptions.url as string),
    skipOnError: true,
    errorResponseBuilder: (request: FastifyRequest, context) => {
      const who = callerOf(request).startsWith('key:') ? 'API key' : 'address'
      return new AppError(
        429,
        ErrorCode.rateLimited,
        `Too many requests: this ${who} may make ${context.max} per minute (RATE_LIMIT_PER_MINUTE); retry in ${context.after}`,
      )
    },
  })
}

export default fp(rateLimits, {
  name: 'rate-limit',
  dependencies: ['config', 'redis'],
  fastify: '5.x',
})

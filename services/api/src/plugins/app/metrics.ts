import { createHash, timingSafeEqual } from 'node:crypto'
import { ALL_QUEUES, AppError, authEnabled, ErrorCode } from '@confluence-bot/shared'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Gauge, Registry } from 'prom-client'
import {
  collectProcessMetrics,
  httpDuration,
  httpRequests,
  PREFIX,
  processRegistry,
} from '../../lib/metrics.ts'
import { refuse } from './request-guard.ts'

// GET /metrics: Prometheus' text format, for an operator's Prometheus rather than for API
// clients, so it is left out of the OpenAPI document (README "Metrics" says how to scrape it).
// Who may read it: a scrape presenting METRICS_TOKEN as a Bearer token, or an admin key (the
// figures name routes, queues and sources, which is an operator's business). With auth off and
// no METRICS_TOKEN it is open, like the rest of the API.

/** The job states each queue's depth is reported in. */
const STATES = ['waiting', 'active', 'delayed', 'failed', 'waiting-children'] as const

/** The route a request matched, as its pattern (`/api/jobs/:id`): ids never become labels. */
function routeOf(request: FastifyRequest): string {
  return request.routeOptions.url ?? '(unmatched)'
}

/** `work`'s result, or a rejection once `ms` have passed (the race handles a late outcome). */
function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from Redis within ${ms} ms`)), ms)
  })
  return Promise.race([work, late]).finally(() => clearTimeout(timer))
}

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i

const digest = (text: string) => createHash('sha256').update(text).digest()

async function metrics(fastify: FastifyInstance) {
  const { config } = fastify
  collectProcessMetrics()

  // Queue depth belongs to this app's queues: read from Redis when Prometheus asks, one
  // getJobCounts (a single round trip) per queue.
  const appRegistry = new Registry()
  const queues = fastify.queues
  new Gauge({
    name: `${PREFIX}queue_jobs`,
    help: 'Jobs in each BullMQ queue by state, read from Redis at scrape time',
    labelNames: ['queue', 'state'] as const,
    registers: [appRegistry],
    async collect() {
      this.reset()
      try {
        // BullMQ waits for a connection that Redis being down never gives: the scrape does not.
        const counts = await withTimeout(
          Promise.all(ALL_QUEUES.map((name) => queues[name].getJobCounts(...STATES))),
          config.HEALTH_TIMEOUT_MS,
        )
        ALL_QUEUES.forEach((queue, i) => {
          const byState = counts[i] as Record<string, number>
          for (const state of STATES) this.set({ queue, state }, byState[state] as number)
        })
      } catch (err) {
        // Redis down: the scrape still answers (process figures, request counts), without depths.
        fastify.log.debug({ err: (err as Error).message }, 'queue depth not read for /metrics')
      }
    },
  })

  fastify.addHook('onResponse', async (request, reply) => {
    const route = routeOf(request)
    httpRequests.inc({ method: request.method, route, status_code: reply.statusCode })
    httpDuration.observe({ method: request.method, route }, reply.elapsedTime / 1000)
  })

  const token = config.METRICS_TOKEN === '' ? undefined : digest(config.METRICS_TOKEN)
  const adminOnly = fastify.requireRole('admin')
  const allowed = async (request: FastifyRequest, reply: FastifyReply) => {
    const presented = BEARER.exec(request.headers.authorization ?? '')?.[1]
    if (token !== undefined && presented !== undefined && timingSafeEqual(digest(presented), token))
      return
    // A token was set for the scrape: with auth off, it is the only way in.
    if (token !== undefined && !authEnabled(config)) {
      reply.header('www-authenticate', 'Bearer realm="confluence-bot"')
      return refuse(
        reply,
        new AppError(
          401,
          ErrorCode.unauthorized,
          'Send METRICS_TOKEN as "Authorization: Bearer <token>"',
        ),
      )
    }
    return adminOnly(request, reply)
  }

  fastify.get('/metrics', { onRequest: allowed }, async (_request, reply) => {
    const [process, app] = await Promise.all([processRegistry.metrics(), appRegistry.metrics()])
    reply.type(processRegistry.contentType)
    return `${process}\n${app}`
  })
}

export default fp(metrics, {
  name: 'metrics',
  dependencies: ['config', 'queues', 'auth'],
  fastify: '5.x',
})

import { AppError, ErrorCode } from '@confluence-bot/shared'
import underPressure from '@fastify/under-pressure'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

// Load shedding: when the event loop is saturated (its mean delay or its busy share over the last
// second past PRESSURE_MAX_EVENT_LOOP_*), a new request is answered at once with 503, Retry-After
// and the API's error shape instead of joining a queue that only grows, until every answer is
// late and memory runs out. Requests already being answered carry on.
//
// The probes and the scrape still answer: a readiness probe failing on every replica at once
// would take the whole service out of the load balancer (a busy api is still a working one), and
// /metrics is how an operator sees the pressure.

/** Seconds a shed client is told to wait: the pressure is measured again each second. */
export const RETRY_AFTER_S = 2

const EXEMPT = new Set(['/api/health', '/api/health/live', '/metrics'])

/**
 * Nothing is shed until this long after the app is ready: the first samples measure the boot
 * itself (loading and compiling everything), which is no sign of load, and a fresh replica would
 * otherwise refuse its first requests.
 */
export const WARM_UP_MS = 2_000

async function backPressure(fastify: FastifyInstance) {
  const { config } = fastify
  const delayLimit = config.PRESSURE_MAX_EVENT_LOOP_DELAY_MS
  const busyLimit = config.PRESSURE_MAX_EVENT_LOOP_UTILIZATION
  let shedFrom = Number.POSITIVE_INFINITY
  fastify.addHook('onReady', async () => {
    shedFrom = performance.now() + WARM_UP_MS
  })
  await fastify.register(underPressure, {
    maxEventLoopDelay: delayLimit,
    maxEventLoopUtilization: busyLimit,
    // The busy share of the last interval, not since the process started.
    eventLoopUtilizationMode: 'interval',
    retryAfter: RETRY_AFTER_S,
    pressureHandler: (request, reply, type, value) => {
      if (EXEMPT.has(request.routeOptions.url as string) || performance.now() < shedFrom) {
        return undefined
      }
      const what =
        type === underPressure.TYPE_EVENT_LOOP_DELAY
          ? `event loop delay ${Math.round(value as number)} ms > PRESSURE_MAX_EVENT_LOOP_DELAY_MS=${delayLimit}`
          : `event loop busy ${Math.round((value as number) * 100)}% > PRESSURE_MAX_EVENT_LOOP_UTILIZATION=${busyLimit}`
      reply.header('retry-after', String(RETRY_AFTER_S))
      return Promise.reject(
        new AppError(
          503,
          ErrorCode.overloaded,
          `The API is overloaded (${what}); retry after ${RETRY_AFTER_S} s`,
        ),
      )
    },
  })
}

export default fp(backPressure, { name: 'back-pressure', dependencies: ['config'], fastify: '5.x' })

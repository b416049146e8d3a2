import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

declare module 'fastify' {
  interface FastifyInstance {
    /** Flipped when shutdown starts, so readiness fails and the load balancer drains us. */
    readiness: { shuttingDown: boolean }
  }
}

async function readiness(fastify: FastifyInstance) {
  fastify.decorate('readiness', { shuttingDown: false })
  fastify.addHook('preClose', async () => {
    fastify.readiness.shuttingDown = true
  })
}

export default fp(readiness, { name: 'readiness', fastify: '5.x' })

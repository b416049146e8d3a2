import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { HealthSchema, LiveSchema } from '../../schemas/health.ts'

const health: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/health',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness: Redis, the LanceDB index and Ollama, each with its latency',
        description:
          '`ok` when all answer; `degraded` (200) when only Ollama is down; `down` (503) when ' +
          'Redis or the index is unusable, or the service is shutting down. The checks run at most ' +
          'once a second: requests within that second, or while a round runs, share its result.',
        security: [],
        response: { 200: HealthSchema, 503: HealthSchema },
      },
    },
    async (_request, reply) => {
      // Shared and briefly cached (plugins/app/readiness.ts): a flood of probes is not one on Ollama.
      const body = await fastify.readiness.check()
      return reply.code(body.status === 'down' ? 503 : 200).send(body)
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

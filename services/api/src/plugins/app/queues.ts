import {
  ALL_QUEUES,
  defaultJobOptions,
  QUEUE_PREFIX,
  type QueueNameValue,
} from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

declare module 'fastify' {
  interface FastifyInstance {
    queues: Record<QueueNameValue, Queue>
  }
}

// The API's producer side of the queue contract. The queues share the fail-fast Redis
// connection (offline queue off), so an enqueue while Redis is down errors at once.
async function queues(fastify: FastifyInstance) {
  const entries = ALL_QUEUES.map((name) => {
    const queue = new Queue(name, {
      connection: fastify.redis,
      prefix: QUEUE_PREFIX,
      defaultJobOptions: structuredClone(defaultJobOptions) as never,
    })
    queue.on('error', (err) => fastify.log.debug({ err: err.message, queue: name }, 'queue error'))
    return [name, queue] as const
  })
  fastify.decorate('queues', Object.fromEntries(entries) as Record<QueueNameValue, Queue>)
  fastify.addHook('onClose', async () => {
    await Promise.all(entries.map(([, queue]) => queue.close()))
  })
}

export default fp(queues, { name: 'queues', dependencies: ['config', 'redis'], fastify: '5.x' })

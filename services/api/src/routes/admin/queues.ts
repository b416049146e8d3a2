import { createBullBoard } from '@bull-board/api'
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter'
import { FastifyAdapter } from '@bull-board/fastify'
import type { FastifyInstance } from 'fastify'

export const DASHBOARD_PATH = '/admin/queues'

// bull-board over every queue of the contract, inside the admin scope.
export default async function dashboard(fastify: FastifyInstance) {
  const serverAdapter = new FastifyAdapter()
  serverAdapter.setBasePath(DASHBOARD_PATH)
  createBullBoard({
    queues: Object.values(fastify.queues).map((queue) => new BullMQAdapter(queue)),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'confluence-bot' } },
  })
  await fastify.register(serverAdapter.registerPlugin() as never, { prefix: '/queues' })
}

import { lancedbConnect } from '@confluence-bot/index'
import type { Connection } from '@lancedb/lancedb'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

declare module 'fastify' {
  interface FastifyInstance {
    lancedb: { connection(): Promise<Connection> }
  }
}

// Opens the index lazily: the API starts (and reports itself `down`) even when the LanceDB
// location is not usable yet, and reconnects on the next call after a failure. Through the one
// connect helper every reader and the writer use, so the health check sees the index as they do.
async function lancedb(fastify: FastifyInstance) {
  let pending: Promise<Connection> | undefined
  const connection = () => {
    pending ??= lancedbConnect(fastify.config.LANCEDB_URI).catch((err: unknown) => {
      pending = undefined
      throw err
    })
    return pending
  }
  fastify.decorate('lancedb', { connection })
  fastify.addHook('onClose', async () => {
    const db = await pending?.catch(() => undefined)
    db?.close()
  })
}

export default fp(lancedb, { name: 'lancedb', dependencies: ['config'], fastify: '5.x' })

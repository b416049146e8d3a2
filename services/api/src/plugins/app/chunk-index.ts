import { ollamaQueryEmbedder, openSearchIndex, type SearchIndex } from '@confluence-bot/index'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { timedSearches } from '../../lib/metrics.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The read side of the chunk index (search, grounding), opened on first use. */
    chunkIndex: { open(): Promise<SearchIndex> }
  }
}

// Opened lazily, like the health check's connection: the api starts (and says what is wrong)
// when the index location is not usable yet, and tries again on the next request.
async function chunkIndex(fastify: FastifyInstance) {
  const { config } = fastify
  let pending: Promise<SearchIndex> | undefined
  const open = () => {
    pending ??= openSearchIndex({
      uri: config.LANCEDB_URI,
      embed: ollamaQueryEmbedder({ url: config.OLLAMA_URL }),
      perPage: config.SEARCH_PER_PAGE,
    })
      .then(timedSearches)
      .catch((err: unknown) => {
        pending = undefined
        throw err
      })
    return pending
  }
  fastify.decorate('chunkIndex', { open })
  fastify.addHook('onClose', async () => {
    const opened = await pending?.catch(() => undefined)
    await opened?.close()
  })
}

export default fp(chunkIndex, { name: 'chunk-index', dependencies: ['config'], fastify: '5.x' })

import { indexedSpaces } from '@confluence-bot/index'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { allowedSpaces } from '../../lib/spaces.ts'
import { errorResponses } from '../../schemas/common.ts'
import { SpaceListSchema } from '../../schemas/spaces.ts'
import { searchFailure } from './search.ts'

// The spaces a question can be asked of: those the index holds, narrowed to the caller key's.
const spaces: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/spaces',
    {
      schema: {
        tags: ['search'],
        summary: 'The indexed Confluence spaces your key may read',
        description:
          'Each space the index holds pages of, with its page and chunk counts, limited to the ' +
          'spaces of the API key. Its keys are what `rag.spaces` (chat) and `spaces` (search) ' +
          'take. A space whose pages have not synced yet is not listed.',
        response: { 200: SpaceListSchema, ...errorResponses(401, 503) },
      },
    },
    async (request) => {
      const held = await fastify.lancedb
        .connection()
        .then(indexedSpaces)
        .catch((err: unknown) => {
          throw searchFailure(err)
        })
      const allowed = allowedSpaces(request)
      const readable = new Set(allowed ?? held.map((s) => s.space))
      return {
        spaces: held
          .filter((s) => readable.has(s.space))
          .map(({ space, pages, chunks }) => ({ key: space, pages, chunks })),
      }
    },
  )
}

export default spaces

import { SPACES_STALE_MS, spaceList } from '@confluence-bot/index'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { allowedSpaces } from '../../lib/spaces.ts'
import { errorResponses } from '../../schemas/common.ts'
import { SpaceListSchema } from '../../schemas/spaces.ts'
import { searchFailure } from './search.ts'

// The spaces a question can be asked of: those the index holds, narrowed to the caller key's.
// Every page load asks, and counting means scanning the chunk table: one scan serves every
// caller of this app (see spaceList), for every key (each answer is narrowed afterwards).
const spaces: FastifyPluginAsyncTypebox = async (fastify) => {
  const indexed = spaceList(() => fastify.lancedb.connection())
  fastify.get(
    '/spaces',
    {
      schema: {
        tags: ['search'],
        summary: 'The indexed Confluence spaces your key may read',
        description:
          'Each space the index holds pages of, with its page and chunk counts, limited to the ' +
          'spaces of the API key. Its keys are what `rag.spaces` (chat) and `spaces` (search) ' +
          'take. A space is its key, whatever source or site holds it, and a page is counted ' +
          'once however many sources hold it. The list is shared by all callers and reused ' +
          `while the index is unchanged, and for up to ${SPACES_STALE_MS / 1000} s after it ` +
          'changed: a space a sync has just added is listed within that time.',
        response: { 200: SpaceListSchema, ...errorResponses(401, 503) },
      },
    },
    async (request) => {
      const held = await indexed().catch((err: unknown) => {
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

import { SearchRequestError } from '@confluence-bot/index'
import { AppError, ErrorCode } from '@confluence-bot/shared'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { allowedSpaces } from '../../lib/spaces.ts'
import { errorResponses } from '../../schemas/common.ts'
import { SearchRequestSchema, SearchResponseSchema } from '../../schemas/search.ts'

/** A search the index could not run: the request's fault (400) or the index's (503). */
export function searchFailure(err: unknown): AppError {
  if (err instanceof SearchRequestError) {
    return new AppError(400, ErrorCode.validation, err.message, { cause: err })
  }
  return new AppError(
    503,
    ErrorCode.indexUnavailable,
    `The Confluence index cannot be read right now (${(err as Error).message})`,
    { cause: err },
  )
}

const search: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post(
    '/search',
    {
      schema: {
        tags: ['search'],
        summary: 'Search the Confluence index',
        description:
          'Hybrid search (full-text BM25 and vector, fused by reciprocal rank) over the chunks ' +
          'of the indexed pages, at most `per_page` chunks of one page among the hits. Filters ' +
          'run inside the index query. A key limited to some spaces only ever sees those. ' +
          '`mode` says which mode ran: without vectors, or with the embedding model ' +
          'unreachable, the search runs on keywords and `fallback` says why.',
        body: SearchRequestSchema,
        response: {
          200: SearchResponseSchema,
          ...errorResponses(400, 401, 413, 415, 503),
        },
      },
    },
    async (request) => {
      const { query, top_k, mode, per_page, spaces, ...rest } = request.body
      const index = await fastify.chunkIndex.open().catch((err: unknown) => {
        throw searchFailure(err)
      })
      const filters = { ...rest, spaces: allowedSpaces(request, spaces) }
      return index.search({ query, top_k, mode, per_page, filters }).catch((err: unknown) => {
        throw searchFailure(err)
      })
    },
  )
}

export default search

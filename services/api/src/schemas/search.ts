import Type, { type Static } from 'typebox'

// POST /api/search (DESIGN §3): the request's filters run inside the index query; the response
// names the mode that actually ran and, when it is not the one asked for, why.

const Mode = Type.Union([Type.Literal('hybrid'), Type.Literal('vector'), Type.Literal('keyword')])

const KeyList = (description: string) =>
  Type.Array(Type.String({ minLength: 1, maxLength: 255 }), {
    maxItems: 100,
    description,
  })

export const SearchRequestSchema = Type.Object(
  {
    query: Type.String({
      minLength: 1,
      maxLength: 2000,
      pattern: '\\S',
      description: 'What to look for, in the words and language of the space',
      examples: ['How do I rotate the database password?'],
    }),
    top_k: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100, default: 10, description: 'Hits wanted' }),
    ),
    mode: Type.Optional(
      Type.Union([Mode], {
        default: 'hybrid',
        description:
          'hybrid: full-text (BM25) and vector search fused; vector or keyword alone. Without vectors (or a reachable embedding model) every mode runs as keyword.',
      }),
    ),
    spaces: Type.Optional(
      KeyList('Only these space keys (within the spaces the API key may read)'),
    ),
    source_ids: Type.Optional(KeyList('Only these sources')),
    labels: Type.Optional(KeyList('Only pages with at least one of these labels')),
    updated_after: Type.Optional(
      Type.String({
        minLength: 10,
        maxLength: 64,
        description: 'Only page versions updated after this ISO 8601 time',
        examples: ['2024-05-01', '2024-05-01T10:00:00Z'],
      }),
    ),
    per_page: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 50,
        description:
          'At most this many chunks of one page among the hits (default SEARCH_PER_PAGE)',
      }),
    ),
  },
  { additionalProperties: false, $id: 'SearchRequest', title: 'SearchRequest' },
)
export type SearchBody = Static<typeof SearchRequestSchema>

export const SearchHitSchema = Type.Object(
  {
    chunk_id: Type.String(),
    page_id: Type.String(),
    source_id: Type.String(),
    title: Type.String(),
    breadcrumb: Type.String({ description: 'Space › ancestors › page › headings' }),
    heading_path: Type.String({ description: 'The headings above the chunk on its page' }),
    url: Type.String({ description: 'The section on the Confluence page (with its anchor)' }),
    space: Type.String(),
    updated_at: Type.String({ description: 'When the page version was saved (ISO 8601)' }),
    labels: Type.Array(Type.String()),
    score: Type.Number({ description: 'Higher is better; comparable within one response' }),
    similarity: Type.Optional(
      Type.Number({ description: "Cosine similarity of the chunk's vector to the query's" }),
    ),
    keyword_score: Type.Optional(Type.Number({ description: 'BM25 score of the keyword match' })),
    text: Type.String({ description: 'The chunk (markdown)' }),
    snippet: Type.String({ description: 'A short extract around the query terms' }),
  },
  { $id: 'SearchHit', title: 'SearchHit' },
)

export const SearchResponseSchema = Type.Object(
  {
    mode: Type.Union([Mode], { description: 'The mode that ran' }),
    fallback: Type.Optional(
      Type.String({ description: 'Why the mode that ran is not the one asked for' }),
    ),
    results: Type.Array(Type.Ref('SearchHit')),
  },
  { $id: 'SearchResponse', title: 'SearchResponse' },
)

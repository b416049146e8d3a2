// The shape of the LanceDB chunk table, shared by the worker (writes it) and the api (searches
// it). Plain constants and types only: no LanceDB or Arrow import, so the api can build its
// queries from the same names without pulling in the writer.

export const CHUNKS_TABLE = 'chunks'

/** Column names of the chunk table. */
export const ChunkColumn = {
  chunkId: 'chunk_id',
  sourceId: 'source_id',
  space: 'space',
  pageId: 'page_id',
  version: 'version',
  chunkPos: 'chunk_pos',
  title: 'title',
  breadcrumb: 'breadcrumb',
  headingPath: 'heading_path',
  url: 'url',
  text: 'text',
  updatedAt: 'updated_at',
  labels: 'labels',
  embedModel: 'embed_model',
  vector: 'vector',
} as const

export type ChunkColumnName = (typeof ChunkColumn)[keyof typeof ChunkColumn]

/**
 * Keys of the table's schema metadata (and of the vector field's metadata) that record which
 * embedding model filled the vector column and its dimension.
 */
export const EmbedMeta = { model: 'embed_model', dim: 'embed_dim' } as const

/** One chunk of one page version, as stored. */
export type ChunkRow = {
  /** `rowChunkId(source_id, page_id, chunk_pos)`: a retried job converges to the same rows. */
  chunk_id: string
  source_id: string
  space: string
  page_id: string
  /** Confluence page version the chunk was cut from. */
  version: string
  chunk_pos: number
  title: string
  breadcrumb: string
  heading_path: string
  /** URL of the section (page URL with the heading anchor). */
  url: string
  text: string
  /** ISO 8601 time of the page version. */
  updated_at: string
  labels: string[]
  /** From the model the table records (float32 values), or null until it is embedded. */
  vector: ArrayLike<number> | null
  /** The model that produced `vector`; '' when there is no vector yet. */
  embed_model: string
}

/** Columns `/api/search` returns for a hit (DESIGN §3), besides its score. */
export const SEARCH_RESULT_COLUMNS = [
  ChunkColumn.chunkId,
  ChunkColumn.text,
  ChunkColumn.title,
  ChunkColumn.url,
  ChunkColumn.space,
  ChunkColumn.headingPath,
] as const satisfies readonly ChunkColumnName[]

export const rowChunkId = (sourceId: string, pageId: string, pos: number): string =>
  `${sourceId}:${pageId}:${pos}`

/**
 * A SQL string literal for LanceDB filters: quotes doubled, nothing else needs escaping
 * (DataFusion reads backslashes literally). Every value that reaches a filter goes through here.
 */
export const sqlString = (value: string): string => `'${value.replaceAll("'", "''")}'`

/** `(a, b, …)` for an `IN` filter; callers make sure the list is not empty. */
export const sqlStringList = (values: Iterable<string>): string =>
  `(${Array.from(values, sqlString).join(', ')})`

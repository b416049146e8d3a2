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
export const EmbedMeta = {
  model: 'embed_model',
  dim: 'embed_dim',
  /** The text put before each chunk when it was embedded ('' for none). */
  documentPrefix: 'embed_document_prefix',
  /** The text a query must be given before it is embedded, to match those vectors. */
  queryPrefix: 'embed_query_prefix',
} as const

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

/**
 * An Ollama model name in full, as Ollama itself reads one: `host/namespace/model:tag`, with
 * Ollama's defaults for the parts left out (host `registry.ollama.ai`, namespace `library`, tag
 * `latest`), lower-cased (Ollama matches names without regard to case). `embed`,
 * `embed:latest`, `library/embed` and `registry.ollama.ai/library/embed:latest` are one model.
 * A tag is what follows the last `:` after the last `/` (a `:` before it is a host's port); a
 * scheme on the host (`https://`) is dropped.
 */
export function ollamaModelName(name: string): string {
  let rest = name.trim().toLowerCase()
  let tag = 'latest'
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1) || tag
    rest = rest.slice(0, colon)
  }
  const parts = rest.split('/')
  const model = parts.pop() as string
  const namespace = parts.pop() || 'library'
  const host = parts.join('/').replace(/^[a-z][a-z0-9+.-]*:\/\//, '') || 'registry.ollama.ai'
  return `${host}/${namespace}/${model}:${tag}`
}

/** True when two names (a configured one, one a table records) are the same Ollama model. */
export const sameEmbedModel = (a: string, b: string): boolean =>
  ollamaModelName(a) === ollamaModelName(b)

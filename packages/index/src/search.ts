// The read side of the chunk index: hybrid (full-text BM25 + vector, fused by LanceDB's
// reranker), vector-only and keyword-only search, filters applied inside every leg, at most a
// few chunks per page. Never writes.
//
// CONTRACT (fixed; the implementation fills it in): api, CLI and bench code against these types.

export type SearchMode = 'hybrid' | 'vector' | 'keyword'

export type SearchFilters = {
  /** Space keys a hit may come from; `[]` matches nothing (a key limited to no space). */
  spaces?: readonly string[]
  source_ids?: readonly string[]
  /** A hit's page carries at least one of these labels. */
  labels?: readonly string[]
  /** ISO 8601: only page versions updated after this time. */
  updated_after?: string
}

export type SearchRequest = {
  query: string
  /** Hits wanted (default 10). */
  top_k?: number
  /** Default 'hybrid'. */
  mode?: SearchMode
  filters?: SearchFilters
  /** At most this many chunks of one page among the hits (default: the index's setting, 2). */
  per_page?: number
}

export type SearchHit = {
  chunk_id: string
  page_id: string
  source_id: string
  title: string
  breadcrumb: string
  heading_path: string
  /** The section's URL (page URL with the heading anchor). */
  url: string
  space: string
  updated_at: string
  labels: string[]
  /** Higher is better; comparable within one response only. */
  score: number
  /** Cosine similarity of the chunk's vector to the query's (when the vector leg found it). */
  similarity?: number
  /** BM25 score of the keyword leg (when it found it). */
  keyword_score?: number
  text: string
  /** A short extract of `text` around the query's terms. */
  snippet: string
}

export type SearchResponse = {
  /** The mode that actually ran. */
  mode: SearchMode
  /** Why it is not the one asked for (no vectors in the table, embedding model unreachable…). */
  fallback?: string
  results: SearchHit[]
}

/**
 * The vector of `text` from `model`; null when the model cannot be reached. The search module
 * calls it with the table's recorded model and the query prefix the table records already put
 * before the query.
 */
export type QueryEmbedder = (text: string, model: string) => Promise<Float32Array | null>

export type SearchIndexOptions = {
  /** LANCEDB_URI: a directory or s3://… */
  uri: string
  embed: QueryEmbedder
  /** Default at most this many chunks of one page in the hits (SEARCH_PER_PAGE, default 2). */
  perPage?: number
  cacheMb?: number
}

export type SearchIndex = {
  search(request: SearchRequest): Promise<SearchResponse>
  close(): Promise<void>
}

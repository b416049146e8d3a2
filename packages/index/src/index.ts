// The LanceDB chunk index as a package: the connection (bounded caches), the index settings the
// writer builds with and the reader queries with, and the read side (search) used by the api,
// the CLI and the bench.
export { lancedbConnect } from './connect.ts'
export * from './eval.ts'
export { filterSql, matchesNothing, normaliseTime, SearchRequestError } from './filters.ts'
export { FTS_INDEX_OPTIONS, ftsIndex, ftsIndexCurrent, ftsIndexStale } from './fts.ts'
export * from './fusion.ts'
export * from './grounding.ts'
export { keywordQuery, koreanStem } from './keyword-query.ts'
export * from './page.ts'
export { defuseControlTokens, defusePageText } from './page-text.ts'
export {
  DEFAULT_QUERY_EMBED_TIMEOUT_MS,
  type OllamaQueryEmbedderOptions,
  ollamaQueryEmbedder,
} from './query-embedder.ts'
export {
  DEFAULT_PER_PAGE,
  DEFAULT_TOP_K,
  MAX_QUERY_CHARS,
  MAX_TOP_K,
  openSearchIndex,
  type QueryEmbedder,
  type SearchFilters,
  type SearchHit,
  type SearchIndex,
  type SearchIndexOptions,
  type SearchMode,
  type SearchRequest,
  type SearchResponse,
} from './search.ts'
export { plainText, SNIPPET_CHARS, snippet } from './snippet.ts'
export {
  type IndexedSpace,
  indexedSpaces,
  SPACES_STALE_MS,
  type SpaceListOptions,
  spaceList,
} from './spaces.ts'
export * from './vector-index.ts'

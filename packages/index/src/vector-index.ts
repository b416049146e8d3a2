// How the vector index is built (by the worker's index upkeep) and queried (by search): one
// place, so the writer and the reader agree. Owned by the search benchmark's measurements.

/** HNSW search breadth of a vector query (LanceDB's default is too low for good recall). */
export const VECTOR_QUERY_EF = 100

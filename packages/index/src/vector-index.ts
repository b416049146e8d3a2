import { Index } from '@lancedb/lancedb'

// How the vector index is built (by the worker's index upkeep) and queried (by search): one
// place, so the writer and the reader agree. Owned by the search benchmark's measurements
// (`pnpm bench search`; method and earlier figures: performance-notes.md §1).
//
// MEASURED (100k chunks of 768-d clustered vectors, performance-notes §1.0 "structured";
// 2 shared cores, loaded, so build times are comparative):
// - The HNSW graph build dominates the index build, and efConstruction (LanceDB's default 300)
//   drives it: one partition built in 235–310 s at 300, in 70 s at 100, with the same recall@10
//   (0.994 at query ef 100). So: efConstruction 100.
// - More IVF partitions build faster too (16: 57–65 s at efConstruction 300) but every query
//   then searches every probed partition's graph: p50 4.6–6.7 ms against 1.9 ms with one at the
//   same ef, and probing only one or two of them lost recall (0.82 / 0.92 at 8 partitions).
//   So one partition, until a table is large enough that one graph's memory matters.
// - The build's memory is the vector column read once (+350–390 MB at 100k) whatever the
//   partition count; a build on uncompacted fragments also paid a remap when compacted (see
//   the worker's maintain()).
// - Query ef 50 → 100 → 200: recall@10 0.984–0.993 → 0.994 → 0.994 at 100k, and at 10k
//   (where many queries have no chunk of their own cluster, so their neighbours are near-ties)
//   ef 100 → 150 → 200: 0.952 → 0.968 → 0.974, p50 2.0–2.5 ms for all three (noise). So 200.
//   refineFactor 2 gave 1.000 but doubled p50 and quadrupled p95: not used.

/** The kind the worker logs when it builds the vector index. */
export const VECTOR_INDEX_KIND = 'ivf_hnsw_sq'

/** HNSW search breadth of a vector query (LanceDB's default is too low for good recall). */
export const VECTOR_QUERY_EF = 200

/**
 * The ef of a query for `limit` rows: LanceDB refuses an ef below the limit ("ef must be
 * greater than or equal to k"), and search asks for more candidates when its per-page cap
 * leaves too few hits.
 */
export const vectorQueryEf = (limit: number): number => Math.max(VECTOR_QUERY_EF, limit)

/**
 * Rows per IVF partition: each partition is its own HNSW graph, built with its vectors in
 * memory; a query searches every one, so there are as few as a graph's memory allows.
 */
export const VECTOR_INDEX_ROWS_PER_PARTITION = 250_000

/** Most partitions an index gets (each is searched by every query). */
export const VECTOR_INDEX_MAX_PARTITIONS = 16

/** Candidates an insertion looks at while the HNSW graph is built (LanceDB's default is 300). */
export const VECTOR_INDEX_EF_CONSTRUCTION = 100

/**
 * Segments the vector index may have before maintenance rebuilds it as one. Each upkeep pass
 * that folds new rows in adds a segment (LanceDB indexes them as a delta beside the existing
 * index, never merging), and every query searches every segment. MEASURED (100k chunks, raw
 * indexed query, p50): 1 segment 1.5 ms, 2: 3.0 ms, 3: 3.3 ms, 5: 4.1 ms, 9: 4.8 ms. The
 * first delta costs most, each further one ~0.2 ms; a rebuild costs what the first build did
 * (the whole vector column in memory). So the deltas of several syncs are let accumulate, and
 * the index is rebuilt when an upkeep pass leaves more than this.
 */
export const VECTOR_INDEX_MAX_SEGMENTS = 8

/** IVF partitions for a table of `rows` rows with vectors. */
export function vectorIndexPartitions(rows: number): number {
  const wanted = Math.round(rows / VECTOR_INDEX_ROWS_PER_PARTITION)
  return Math.min(VECTOR_INDEX_MAX_PARTITIONS, Math.max(1, wanted))
}

/** The vector index for a table of `rows` rows with vectors (cosine: Ollama's embeddings). */
export function vectorIndex(rows: number): Index {
  return Index.hnswSq({
    distanceType: 'cosine',
    numPartitions: vectorIndexPartitions(rows),
    efConstruction: VECTOR_INDEX_EF_CONSTRUCTION,
  })
}

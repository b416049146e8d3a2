import { DIM } from './data.ts'

// The floor every indexed query is compared with: an exact top-k by dot product (cosine order
// on unit vectors) over one Float32Array of all vectors, a plain single-threaded loop keeping a
// sorted top-k by insertion. It is also the ground truth recall is measured against.

export type Hit = { row: number; score: number }

export function bruteTopK(vectors: Float32Array, rows: number, query: Float32Array, k = 10): Hit[] {
  const scores = new Float64Array(k).fill(Number.NEGATIVE_INFINITY)
  const ids = new Int32Array(k).fill(-1)
  for (let r = 0; r < rows; r++) {
    const base = r * DIM
    let dot = 0
    for (let i = 0; i < DIM; i++) dot += (vectors[base + i] as number) * (query[i] as number)
    if (dot <= (scores[k - 1] as number)) continue
    let j = k - 1
    while (j > 0 && (scores[j - 1] as number) < dot) {
      scores[j] = scores[j - 1] as number
      ids[j] = ids[j - 1] as number
      j--
    }
    scores[j] = dot
    ids[j] = r
  }
  return Array.from(ids, (row, i) => ({ row, score: scores[i] as number }))
}

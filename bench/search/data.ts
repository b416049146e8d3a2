// Synthetic chunks for the search bench (performance-notes.md §1.0): 768-d unit vectors drawn
// around cluster centres, so the true top-10 of a query sits inside one cluster and recall@10
// means something, and multi-sentence text of pseudo-words with a Zipf vocabulary plus each
// cluster's topic words, so BM25 sees realistic term statistics. Everything is seeded: two runs
// build the same tables and ask the same queries.

export const DIM = 768
const VOCABULARY = 30_000
const TOPIC_WORDS = 24
const TOPIC_SHARE = 0.15

/** A seeded uniform generator in [0, 1) (mulberry32): fast and good enough for test data. */
export function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Standard normal samples (Box–Muller, both values used). */
function gaussian(rand: () => number): () => number {
  let spare: number | undefined
  return () => {
    if (spare !== undefined) {
      const value = spare
      spare = undefined
      return value
    }
    const u = 1 - rand()
    const v = rand()
    const r = Math.sqrt(-2 * Math.log(u))
    spare = r * Math.sin(2 * Math.PI * v)
    return r * Math.cos(2 * Math.PI * v)
  }
}

function normalize(v: Float32Array): Float32Array {
  let norm = 0
  for (let i = 0; i < v.length; i++) norm += (v[i] as number) * (v[i] as number)
  const scale = 1 / Math.sqrt(norm)
  for (let i = 0; i < v.length; i++) v[i] = (v[i] as number) * scale
  return v
}

export type Kind = 'structured' | 'hard'

/**
 * Vector generator over `clusters` centres (unit Gaussian directions).
 * - structured: centre + a point of the cluster's own random 16-d subspace + a little noise, so
 *   the data has a low intrinsic dimension like text embeddings (10th-neighbour cosine ≈ 0.71);
 * - hard: centre + isotropic noise as large as the centre, so the true top-10 barely stand out
 *   from the rest of their cluster (pessimistic for quantisation).
 */
export function vectorSpace(kind: Kind, clusters: number, seed: number) {
  const g = gaussian(random(seed))
  const centres = Array.from({ length: clusters }, () => {
    const c = new Float32Array(DIM)
    for (let i = 0; i < DIM; i++) c[i] = g()
    return normalize(c)
  })
  const SUB = 16
  const bases =
    kind === 'structured'
      ? centres.map(() =>
          Array.from({ length: SUB }, () => {
            const b = new Float32Array(DIM)
            for (let i = 0; i < DIM; i++) b[i] = g()
            return normalize(b)
          }),
        )
      : []
  const noise = kind === 'structured' ? 0.3 / Math.sqrt(DIM) : 1 / Math.sqrt(DIM)
  /** A point of cluster `k`, drawn with `draw` (a normal generator of its own stream). */
  return (k: number, draw: () => number): Float32Array => {
    const v = new Float32Array(centres[k] as Float32Array)
    for (const b of bases[k] ?? []) {
      const z = draw() * (0.8 / 4)
      for (let i = 0; i < DIM; i++) v[i] = (v[i] as number) + z * (b[i] as number)
    }
    for (let i = 0; i < DIM; i++) v[i] = (v[i] as number) + noise * draw()
    return normalize(v)
  }
}

/** Pseudo-words: pronounceable syllable strings, distinct for distinct indexes. */
function word(index: number): string {
  const consonants = 'bdfgklmnprstvz'
  const vowels = 'aeiou'
  let out = ''
  let n = index + 1
  while (n > 0) {
    out += (consonants[n % 14] as string) + (vowels[Math.floor(n / 14) % 5] as string)
    n = Math.floor(n / 70)
  }
  return out
}

/** Sampler of Zipf ranks (s = 1) over `size` words, by binary search in the cumulative weights. */
function zipf(size: number, rand: () => number): () => number {
  const cumulative = new Float64Array(size)
  let sum = 0
  for (let i = 0; i < size; i++) {
    sum += 1 / (i + 1)
    cumulative[i] = sum
  }
  return () => {
    const x = rand() * sum
    let lo = 0
    let hi = size - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((cumulative[mid] as number) < x) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

export type Corpus = {
  /** Text of a chunk of cluster `k`: sentences of pseudo-words, about `chars` long. */
  text(k: number, rand: () => number, chars: number): string
  /** A keyword query for cluster `k`: two of its topic words and one common word. */
  query(k: number, rand: () => number): string
}

export function corpus(clusters: number, seed: number): Corpus {
  const rand = random(seed)
  const rank = zipf(VOCABULARY, rand)
  const words = Array.from({ length: VOCABULARY }, (_, i) => word(i))
  // Topic words are their own vocabulary (rarer than any common word), TOPIC_WORDS per cluster.
  const topics = Array.from({ length: clusters }, (_, k) =>
    Array.from({ length: TOPIC_WORDS }, (_, j) => `${word(VOCABULARY + k * TOPIC_WORDS + j)}x`),
  )
  const pick = (k: number, r: () => number) => {
    const list = topics[k] as string[]
    return list[Math.floor(r() * list.length)] as string
  }
  return {
    text(k, r, chars) {
      const sentences: string[] = []
      let length = 0
      while (length < chars) {
        const count = 6 + Math.floor(r() * 14)
        const parts: string[] = []
        for (let i = 0; i < count; i++) {
          parts.push(r() < TOPIC_SHARE ? pick(k, r) : (words[rank()] as string))
        }
        const sentence = `${(parts[0] as string)[0]?.toUpperCase()}${parts.join(' ').slice(1)}.`
        sentences.push(sentence)
        length += sentence.length + 1
      }
      return sentences.join(' ')
    },
    query(k, r) {
      return `${pick(k, r)} ${pick(k, r)} ${words[Math.floor(r() * 50)] as string}`
    },
  }
}

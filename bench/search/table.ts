import { type ChunkRow, rowChunkId } from '@confluence-bot/shared'
import { type Corpus, DIM, random } from './data.ts'

// The bench's chunk table as the sync would write it: pages of CHUNKS_PER_PAGE chunks, every
// chunk of a page about the page's topic (cluster), rows in the table's own schema. Row r of the
// bench's vector array is chunk r % CHUNKS_PER_PAGE of page ⌊r / CHUNKS_PER_PAGE⌋, so a hit's
// chunk id names its row for recall.

export const CHUNKS_PER_PAGE = 20
export const SOURCE = 'bench'
export const SPACE = 'ENG'
export const MODEL = 'nomic-embed-text:latest'
const TEXT_CHARS = 1_500

export type PageData = {
  /** Page number; row = page * CHUNKS_PER_PAGE + chunk position. */
  page: number
  /** Revision: a changed page gets new text and vectors under the same chunk ids. */
  version: number
}

/** Cluster of a page: a fixed scatter, so neighbouring pages are about different things. */
export const pageCluster = (page: number, clusters: number) =>
  Math.floor(random(page * 7919 + 13)() * clusters)

export const rowOf = (chunkId: string): number => {
  const [, page, pos] = chunkId.split(':')
  return Number((page as string).slice(1)) * CHUNKS_PER_PAGE + Number(pos)
}

/**
 * The rows of one page (revision `version`), their vectors also written into `vectors` at the
 * page's rows: the bench's copy, for the brute-force scan and the ground truth.
 */
export function pageRows(
  data: PageData,
  clusters: number,
  point: (k: number, draw: () => number) => Float32Array,
  text: Corpus,
  vectors: Float32Array,
): ChunkRow[] {
  const { page, version } = data
  const k = pageCluster(page, clusters)
  const r = random(page * 104_729 + version * 31 + 7)
  const draw = normals(r)
  const pageId = `p${page}`
  return Array.from({ length: CHUNKS_PER_PAGE }, (_, pos) => {
    const vector = point(k, draw)
    vectors.set(vector, (page * CHUNKS_PER_PAGE + pos) * DIM)
    return {
      chunk_id: rowChunkId(SOURCE, pageId, pos),
      source_id: SOURCE,
      space: SPACE,
      page_id: pageId,
      version: String(version),
      chunk_pos: pos,
      title: `Runbook ${page}`,
      breadcrumb: `Engineering › Runbook ${page} › Section ${pos}`,
      heading_path: `Section ${pos}`,
      url: `https://confluence.example/pages/${page}#section-${pos}`,
      text: text.text(k, r, TEXT_CHARS),
      updated_at: new Date(Date.UTC(2025, 0, 1) + page * 60_000 + version).toISOString(),
      labels: page % 3 === 0 ? ['runbook'] : [],
      vector,
      embed_model: MODEL,
    }
  })
}

function normals(rand: () => number): () => number {
  return () => {
    const u = 1 - rand()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand())
  }
}

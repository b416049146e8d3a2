import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { StandInPage } from './confluence-stand-in.ts'
import { ingestRig, querypieSpace } from './ingest.ts'

// The retrieval fixtures: an English engineering space written for these tests (a fictional
// Platform team's runbooks, onboarding, architecture, API rules…) and the question set that
// names, for each question, the page that answers it. Korean questions are about the real
// querypie pages (`querypieSpace()` in ingest.ts); together they are what `cnfl eval` measures.

const DIR = new URL('../fixtures/search/', import.meta.url)

type SpaceIndex = {
  spaceKey: string
  updatedAt: string
  pages: Array<{ id: string; title: string; parent?: string; labels: string[] }>
}

/** The English space's key. */
export const ENGLISH_SPACE_KEY = 'PLAT'

/** The English fixture space: one storage-format page per file, in a parent/child tree. */
export function englishSpace(): StandInPage[] {
  const index = JSON.parse(readFileSync(new URL('space-en/index.json', DIR), 'utf8')) as SpaceIndex
  return index.pages.map((page) => ({
    id: page.id,
    title: page.title,
    spaceKey: index.spaceKey,
    parentId: page.parent,
    version: 1,
    storage: readFileSync(new URL(`space-en/${page.id}.xhtml`, DIR), 'utf8'),
    labels: page.labels,
    updatedAt: index.updatedAt,
  }))
}

export type Question = {
  question: string
  page_id?: string
  url?: string
  lang: 'en' | 'ko'
  /** What the question tests: an exact term, a paraphrase, or both. */
  kind?: 'exact' | 'paraphrase' | 'mixed'
}

/** Path of the question set (what `cnfl eval` reads). */
export const QUESTIONS_FILE = fileURLToPath(new URL('questions.json', DIR))

/** The question set: English questions over `englishSpace()`, Korean over `querypieSpace()`. */
export function searchQuestions(): Question[] {
  return JSON.parse(readFileSync(QUESTIONS_FILE, 'utf8')) as Question[]
}

/** Length of the stand-in's vectors for retrieval tests: room for the lexical embedding. */
export const EVAL_DIMENSION = 768

/**
 * An index of the querypie pages and the English space built by the real pipeline (a worker
 * syncs both spaces from the Confluence stand-in, embedding through the Ollama stand-in), then
 * maintained so the full-text index exists. Null without ../shared (no querypie pages).
 */
export async function evalIndex(t: { teardown(fn: () => unknown): void }) {
  const querypie = querypieSpace()
  if (querypie === null) return null
  const rig = await ingestRig(t, {
    pages: [...querypie, ...englishSpace()],
    ollama: { embedDimension: EVAL_DIMENSION },
  })
  const { ingest } = await rig.startWorker()
  const run = await rig.waitFor(await rig.enqueue(await rig.register()), 180_000)
  if (run.state !== 'completed') throw new Error(`the sync failed: ${run.failedReason}`)
  await ingest.ingest.store.maintain({ force: true })
  return rig
}

import type { SearchFilters, SearchIndex, SearchMode } from './search.ts'

// Retrieval quality on a question set: for each question the page that answers it, and for each
// search mode how often that page comes first (hit@1), among the first five (hit@5), and the mean
// reciprocal rank of it (MRR, 0 when it is not in the top k). Per language too, so an operator
// who changes the tokenizer, the embedding model or its prefixes sees what it did to each
// language of their space. Ranks count pages, not chunks: the question is whether the right page
// is found, and one page's second chunk should not push another page out of the top five.

export type EvalQuestion = {
  question: string
  /** The expected page, by id… */
  page_id?: string
  /** …or by URL (its anchor, if any, is ignored). */
  url?: string
  /** Reported separately per language (e.g. "en", "ko"). */
  lang?: string
}

export type EvalScores = {
  questions: number
  hit_at_1: number
  hit_at_5: number
  mrr: number
}

export type ModeReport = {
  /** Every question. */
  overall: EvalScores
  /** Questions by their `lang` (those without one count in `overall` only). */
  by_lang: Record<string, EvalScores>
  /** Questions the index answered in another mode than this one, and why (the first reason). */
  fallbacks: number
  fallback_reason?: string
}

export type EvalReport = {
  top_k: number
  modes: Partial<Record<SearchMode, ModeReport>>
  /** For each mode, the 1-based page rank of each question's page (0: not in the top k). */
  ranks: Partial<Record<SearchMode, number[]>>
}

export type EvalOptions = {
  /** Hits asked for per question (default 10); a page below it counts 0 in MRR. */
  topK?: number
  /** Default: keyword, vector, hybrid. */
  modes?: readonly SearchMode[]
  filters?: SearchFilters
  /** Told after each search (e.g. to show progress). */
  onProgress?: (done: number, total: number) => void
}

export const EVAL_MODES: readonly SearchMode[] = ['keyword', 'vector', 'hybrid']
export const DEFAULT_EVAL_TOP_K = 10

/** A question set that cannot be read: says which entry and why. */
export class QuestionSetError extends Error {}

/** The questions of a parsed JSON question set, checked. */
export function parseQuestions(json: unknown): EvalQuestion[] {
  if (!Array.isArray(json) || json.length === 0) {
    throw new QuestionSetError(
      'a question set is a non-empty JSON array of {question, page_id | url}',
    )
  }
  return json.map((entry: unknown, i) => {
    const item = (entry ?? {}) as Record<string, unknown>
    const where = `question ${i + 1}`
    if (typeof item.question !== 'string' || item.question.trim() === '') {
      throw new QuestionSetError(`${where}: "question" must be a non-empty string`)
    }
    const pageId =
      typeof item.page_id === 'number' || typeof item.page_id === 'string'
        ? String(item.page_id)
        : undefined
    const url = typeof item.url === 'string' && item.url !== '' ? item.url : undefined
    if (pageId === undefined && url === undefined) {
      throw new QuestionSetError(`${where}: name the expected page with "page_id" or "url"`)
    }
    if (item.lang !== undefined && typeof item.lang !== 'string') {
      throw new QuestionSetError(`${where}: "lang" must be a string`)
    }
    return { question: item.question, page_id: pageId, url, lang: item.lang }
  })
}

const withoutAnchor = (url: string) => url.replace(/#.*$/s, '')

/** The 1-based rank of the question's page among the distinct pages of `hits`; 0 if absent. */
export function pageRank(
  question: EvalQuestion,
  hits: ReadonlyArray<{ page_id: string; url: string; source_id: string }>,
): number {
  const pages = [
    ...new Map(hits.map((hit) => [`${hit.source_id}\u0000${hit.page_id}`, hit])).values(),
  ]
  const url = question.url === undefined ? undefined : withoutAnchor(question.url)
  const at = pages.findIndex(
    (hit) => hit.page_id === question.page_id || withoutAnchor(hit.url) === url,
  )
  return at + 1
}

/** hit@1, hit@5 and MRR of some ranks (0 = not found). */
export function scoresOf(ranks: readonly number[]): EvalScores {
  const n = ranks.length
  const share = (count: number) => (n === 0 ? 0 : count / n)
  return {
    questions: n,
    hit_at_1: share(ranks.filter((r) => r === 1).length),
    hit_at_5: share(ranks.filter((r) => r >= 1 && r <= 5).length),
    mrr: share(ranks.reduce((sum, r) => sum + (r === 0 ? 0 : 1 / r), 0)),
  }
}

/** Runs every question in every mode against `index`. */
export async function evaluate(
  index: SearchIndex,
  questions: readonly EvalQuestion[],
  options: EvalOptions = {},
): Promise<EvalReport> {
  const topK = options.topK ?? DEFAULT_EVAL_TOP_K
  const modes = options.modes ?? EVAL_MODES
  const report: EvalReport = { top_k: topK, modes: {}, ranks: {} }
  const total = modes.length * questions.length
  let done = 0
  for (const mode of modes) {
    const ranks: number[] = []
    let fallbacks = 0
    let reason: string | undefined
    for (const question of questions) {
      const response = await index.search({
        query: question.question,
        mode,
        // The page wanted, counted by pages: one chunk per page among the hits.
        top_k: topK,
        per_page: 1,
        filters: options.filters,
      })
      if (response.mode !== mode) {
        fallbacks++
        reason ??= response.fallback ?? `ran as ${response.mode}`
      }
      ranks.push(pageRank(question, response.results))
      options.onProgress?.(++done, total)
    }
    const ranked = questions.map((question, i) => ({
      lang: question.lang,
      rank: ranks[i] as number,
    }))
    const langs = [...new Set(ranked.flatMap((q) => (q.lang === undefined ? [] : [q.lang])))]
    report.ranks[mode] = ranks
    report.modes[mode] = {
      overall: scoresOf(ranks),
      by_lang: Object.fromEntries(
        langs
          .sort()
          .map((lang) => [
            lang,
            scoresOf(ranked.filter((q) => q.lang === lang).map((q) => q.rank)),
          ]),
      ),
      fallbacks,
      ...(reason === undefined ? {} : { fallback_reason: reason }),
    }
  }
  return report
}

const fixed = (value: number) => value.toFixed(3)

/** The report as a text table: one row per mode and language (`all` first), then fallbacks. */
export function formatEvalTable(report: EvalReport): string {
  const header = ['mode', 'lang', 'questions', 'hit@1', 'hit@5', 'MRR']
  const rows: string[][] = [header]
  const notes: string[] = []
  for (const [mode, result] of Object.entries(report.modes)) {
    const lines: Array<[string, EvalScores]> = [
      ['all', result.overall],
      ...Object.entries(result.by_lang),
    ]
    for (const [lang, s] of lines) {
      rows.push([
        mode,
        lang,
        String(s.questions),
        fixed(s.hit_at_1),
        fixed(s.hit_at_5),
        fixed(s.mrr),
      ])
    }
    if (result.fallbacks > 0) {
      notes.push(
        `${mode}: ${result.fallbacks} question(s) ran in another mode (${result.fallback_reason})`,
      )
    }
  }
  const widths = header.map((_, col) => Math.max(...rows.map((row) => (row[col] as string).length)))
  // Mode and language to the left, figures to the right.
  const text = rows.map((row) =>
    row
      .map((cell, col) =>
        col < 2 ? cell.padEnd(widths[col] as number) : cell.padStart(widths[col] as number),
      )
      .join('  ')
      .trimEnd(),
  )
  return `${[...text, `top k = ${report.top_k}; ranks count pages`, ...notes].join('\n')}\n`
}

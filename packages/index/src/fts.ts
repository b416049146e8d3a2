import { ChunkColumn } from '@confluence-bot/shared'
import { type FtsOptions, Index, type IndexConfig, type Table } from '@lancedb/lancedb'

// How the full-text index is built (by the worker's index upkeep) and queried (by search): the
// tokenizer chosen for the languages spaces are written in. One place for writer and reader.
//
// MEASURED (LanceDB 0.37.1, keyword-only search through openSearchIndex, one chunk per page,
// tests/fixtures/search/questions.json: 28 English questions over the PLAT fixture space, 28
// Korean over the 22 querypie pages; 494 chunks; hit@1 / hit@5 / MRR of the expected page):
//
//   tokenizer                         English            Korean
//   simple, English stem + stop words 0.96 1.00 0.98     0.61 0.93 0.74   (LanceDB's default)
//   simple, no stemming               0.75 0.96 0.83     0.61 0.93 0.74
//   whitespace                        0.68 0.89 0.78     0.61 0.86 0.71
//   icu, no stemming                  0.75 0.96 0.83     0.64 0.93 0.76
//   icu/split, English stem + stop    0.93 1.00 0.96     0.68 0.89 0.77
//   ngram 2-2                         0.75 0.89 0.82     0.82 1.00 0.90
//   ngram 2-3                         0.79 0.96 0.87     0.86 1.00 0.93
//   ngram 2-4                         0.82 1.00 0.90     0.86 1.00 0.93
//   ngram 3-3                         0.79 1.00 0.87     0.86 1.00 0.93
//   fuzzy match (edit distance 1-2)   ≤ 0.21 hit@1 in both languages (noise outranks the words)
//   with Korean stems added to the query (keyword-query.ts):
//   simple, English stem + stop words 0.96 1.00 0.98     0.79 1.00 0.88
//   icu/split, English stem + stop    0.93 1.00 0.96     0.82 0.96 0.90   ← chosen
//
// n-grams read Korean best (particles glued to words: "설치를", "설치하려면" share "설치"),
// but they make every query an OR over dozens of grams, most of them common ("th", "in", "로 "):
// at 20k chunks a keyword query took p50 190 ms / p95 450 ms with ngram 2-3 and 18 / 117 ms
// with 3-3, against 1.5 / 2.5 ms with icu/split, and the index was 8× larger (13.6 MB against
// 1.6 MB) and 4× slower to build. A 15 ms hybrid p95 at 100k chunks rules them out on the text
// column. icu/split segments Chinese and Japanese (no spaces between words) with ICU's
// dictionary, where `simple` keeps a whole sentence as one token; it splits on punctuation like
// `simple` and keeps English stemming. Korean words keep their particles in the index; the
// query adds their stems (keyword-query.ts), and the vector leg of hybrid search does the rest.
// (An n-gram index on a second column holding only the CJK text, searched together with this
// one, measured Korean 0.75 / 0.96 / 0.83 without query stems at 7 / 23 ms p50 / p95 for 20k
// chunks: a writer schema change for less than the query stems give.)
//
export const FTS_INDEX_OPTIONS = {
  baseTokenizer: 'icu/split',
  language: 'English',
  stem: true,
  removeStopWords: true,
  lowercase: true,
  asciiFolding: true,
  withPosition: false,
} as const satisfies Partial<FtsOptions>

/** The full-text index the chunk table's text column gets. */
export const ftsIndex = (): Index => Index.fts({ ...FTS_INDEX_OPTIONS })

// FtsOptions' names as LanceDB reports them in an index's details.
const DETAIL_NAMES: Record<keyof typeof FTS_INDEX_OPTIONS, string> = {
  baseTokenizer: 'base_tokenizer',
  language: 'language',
  stem: 'stem',
  removeStopWords: 'remove_stop_words',
  lowercase: 'lower_case',
  asciiFolding: 'ascii_folding',
  withPosition: 'with_position',
}

/** Whether a full-text index was built with FTS_INDEX_OPTIONS. */
export function ftsIndexCurrent(index: Pick<IndexConfig, 'indexDetails'>): boolean {
  const details = (index.indexDetails ?? {}) as Record<string, unknown>
  return Object.entries(FTS_INDEX_OPTIONS).every(
    ([name, value]) => details[DETAIL_NAMES[name as keyof typeof FTS_INDEX_OPTIONS]] === value,
  )
}

/**
 * True when the table's text column has a full-text index built with other options (an older
 * release's tokenizer): its tokens no longer match the queries', so it must be rebuilt.
 */
export async function ftsIndexStale(table: Pick<Table, 'listIndices'>): Promise<boolean> {
  const indices = await table.listIndices()
  const fts = indices.filter((i) => i.indexType === 'FTS' && i.columns.includes(ChunkColumn.text))
  return fts.some((index) => !ftsIndexCurrent(index))
}

import { type FtsOptions, Index, type IndexConfig } from '@lancedb/lancedb'

// How the full-text index is built (by the worker's index upkeep) and queried (by search): the
// tokenizer chosen for the languages spaces are written in. One place for writer and reader.
//
// MEASURED: (filled in by the tokenizer measurement)

export const FTS_INDEX_OPTIONS = {
  baseTokenizer: 'ngram',
  ngramMinLength: 2,
  ngramMaxLength: 3,
  prefixOnly: false,
  lowercase: true,
  asciiFolding: true,
  stem: false,
  removeStopWords: false,
  withPosition: false,
} as const satisfies Partial<FtsOptions>

/** The full-text index the chunk table's text column gets. */
export const ftsIndex = (): Index => Index.fts({ ...FTS_INDEX_OPTIONS })

// FtsOptions' names as LanceDB reports them in an index's details.
const DETAIL_NAMES: Record<keyof typeof FTS_INDEX_OPTIONS, string> = {
  baseTokenizer: 'base_tokenizer',
  ngramMinLength: 'min_ngram_length',
  ngramMaxLength: 'max_ngram_length',
  prefixOnly: 'prefix_only',
  lowercase: 'lower_case',
  asciiFolding: 'ascii_folding',
  stem: 'stem',
  removeStopWords: 'remove_stop_words',
  withPosition: 'with_position',
}

/**
 * Whether an existing full-text index was built with FTS_INDEX_OPTIONS. One built with another
 * tokenizer (an older release's) must be rebuilt: its tokens do not match the queries'.
 */
export function ftsIndexCurrent(index: Pick<IndexConfig, 'indexDetails'>): boolean {
  const details = (index.indexDetails ?? {}) as Record<string, unknown>
  return Object.entries(FTS_INDEX_OPTIONS).every(
    ([name, value]) => details[DETAIL_NAMES[name as keyof typeof FTS_INDEX_OPTIONS]] === value,
  )
}

import { ollamaModelName } from '../index-schema/index.ts'

// Many embedding models were trained with a task prefix on each input: a query and a passage
// are embedded differently, and vectors made without the prefix the model expects (or with the
// other side's) retrieve noticeably worse. The worker puts the document prefix before every
// chunk and records both prefixes in the index; search puts the recorded query prefix before a
// question, so queries always match how the vectors were made.

/** Text put before an input before it is embedded; '' for none. */
export type EmbedPrefixes = { query: string; document: string }

/** What EMBED_QUERY_PREFIX / EMBED_DOCUMENT_PREFIX say for "no prefix at all". */
export const NO_EMBED_PREFIX = 'none'

const NONE: EmbedPrefixes = { query: '', document: '' }

// The "Represent this sentence…" instruction of several BERT-style retrievers, for queries only.
const REPRESENT = 'Represent this sentence for searching relevant passages: '

/**
 * Prefixes by model, matched on the model's own name (registry, namespace and tag ignored:
 * `nomic-embed-text:v1.5` and `someone/nomic-embed-text` are nomic). First match wins.
 */
const KNOWN: ReadonlyArray<{ match: RegExp; prefixes: EmbedPrefixes }> = [
  // nomic-embed-text (v1, v1.5, v2-moe): "search_query: " and "search_document: " are required
  // for retrieval (huggingface.co/nomic-ai/nomic-embed-text-v1.5, section Usage).
  {
    match: /^nomic-embed-text/,
    prefixes: { query: 'search_query: ', document: 'search_document: ' },
  },
  // E5 and multilingual-E5 (small/base/large): "query: " and "passage: " on every input
  // (huggingface.co/intfloat/multilingual-e5-large, FAQ). The -instruct and e5-mistral variants
  // take a one-line task instruction on queries instead: not matched, configure them by hand.
  {
    match: /^(?!.*(instruct|mistral))(.*[-_])?e5([-_.]|$)/,
    prefixes: { query: 'query: ', document: 'passage: ' },
  },
  // mxbai-embed-large: the instruction on queries only, documents as they are
  // (mixedbread.ai/docs/embeddings/mxbai-embed-large-v1, "Using a Prompt").
  { match: /^mxbai-embed-large/, prefixes: { query: REPRESENT, document: '' } },
  // Arctic Embed 2.0 (Ollama: snowflake-arctic-embed2; HF: …-l-v2.0): "query: " on queries,
  // nothing on documents (huggingface.co/Snowflake/snowflake-arctic-embed-l-v2.0, Usage).
  {
    match: /^snowflake-arctic-embed(2|.*v2)/,
    prefixes: { query: 'query: ', document: '' },
  },
  // Arctic Embed v1 and v1.5: the same instruction as mxbai on queries, nothing on documents
  // (huggingface.co/Snowflake/snowflake-arctic-embed-m, Usage).
  { match: /^snowflake-arctic-embed/, prefixes: { query: REPRESENT, document: '' } },
  // bge-m3 needs no instruction on either side (huggingface.co/BAAI/bge-m3); all-minilm
  // (sentence-transformers) was trained without one. Anything else: none, unless configured.
]

/** The prefixes a model expects for retrieval ('' for none); unknown models get none. */
export function defaultEmbedPrefixes(model: string): EmbedPrefixes {
  const full = ollamaModelName(model)
  const name = full.slice(full.lastIndexOf('/') + 1, full.lastIndexOf(':'))
  const known = KNOWN.find((entry) => entry.match.test(name))
  return { ...(known?.prefixes ?? NONE) }
}

export type EmbedPrefixSettings = {
  EMBED_MODEL: string
  EMBED_QUERY_PREFIX: string
  EMBED_DOCUMENT_PREFIX: string
}

/**
 * The prefixes a process uses: each setting as written, '' (unset) for EMBED_MODEL's default,
 * `none` for no prefix.
 */
export function embedPrefixes(config: EmbedPrefixSettings): EmbedPrefixes {
  const defaults = defaultEmbedPrefixes(config.EMBED_MODEL)
  const pick = (value: string, fallback: string) =>
    value === '' ? fallback : value === NO_EMBED_PREFIX ? '' : value
  return {
    query: pick(config.EMBED_QUERY_PREFIX, defaults.query),
    document: pick(config.EMBED_DOCUMENT_PREFIX, defaults.document),
  }
}

// A hit's snippet: a short plain-text extract of its chunk around the first place one of the
// query's terms occurs. Chunks are markdown; the snippet is not (no `#`, `**`, `|`, link targets).
// Korean, Japanese and Chinese write words without spaces between them (and Korean glues
// particles to them: "설치를"), so terms are found as substrings, and the cut falls on a word
// boundary as Intl.Segmenter sees it in any script.

export const SNIPPET_CHARS = 200
// Characters around the snippet searched for word boundaries.
const SLACK = 40

/** Markdown as the text a reader sees. */
export function plainText(markdown: string): string {
  return (
    markdown
      // Images and links: their words, not their targets.
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
      .replace(/^\s{0,3}#{1,6}\s+/gm, '')
      .replace(/^\s{0,3}>\s?/gm, '')
      .replace(/^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s+)?/gm, '')
      // Table rules, then cell bars.
      .replace(/^\s*\|?(?:\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*$/gm, '')
      .replace(/\s*\|\s*/g, ' ')
      .replace(/```[^\n]*|`/g, '')
      .replace(/(\*\*|__|\*|~~)(\S(?:.*?\S)?)\1/g, '$2')
      .replace(/\s+/g, ' ')
      .trim()
  )
}

/** The query's terms: words of letters or digits in any script, lower-cased, longest first. */
export function queryTerms(query: string): string[] {
  const words = query.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []
  return [...new Set(words)].sort((a, b) => b.length - a.length)
}

const segmenter = new Intl.Segmenter(undefined, { granularity: 'word' })

// Word boundaries are asked of the segmenter at the two places the cut needs (`containing`
// finds the word around one offset): walking every segment of the window cost more than the
// rest of the snippet. A segment holds the offsets from its start to before its end.

/** The first word boundary at or after `at` (`at` < segments' text length). */
function boundaryFrom(segments: Intl.Segments, at: number): number {
  const word = segments.containing(at) as Intl.SegmentData
  return word.index === at ? at : word.index + word.segment.length
}

/** The last word boundary at or before `at` (the text's end is one). */
function boundaryUpTo(segments: Intl.Segments, at: number, length: number): number {
  return at >= length ? length : (segments.containing(at) as Intl.SegmentData).index
}

/**
 * Where the first term occurs: a term as written, or (for a Korean word with its particle,
 * "설치를" in the query, "설치" in the text) its first two letters or more.
 */
function firstMatch(lower: string, terms: readonly string[]): number {
  let best = -1
  for (const term of terms) {
    for (let len = term.length; len >= Math.min(2, term.length); len--) {
      const at = lower.indexOf(term.slice(0, len))
      if (at >= 0) {
        if (best < 0 || at < best) best = at
        break
      }
    }
  }
  return best
}

/** Chunks whose plain text is kept (they come back: hits repeat across queries and modes). */
const PLAIN_TEXT_CACHE = 500
const plainTexts = new Map<string, string>()

/**
 * plainText of a chunk, remembered for the last chunks seen: its ten passes over the markdown
 * were half of a snippet's cost. Cleared whole when full (cheaper than tracking use, and the
 * hits of the next queries fill it again).
 */
function plainTextOf(markdown: string): string {
  let text = plainTexts.get(markdown)
  if (text === undefined) {
    if (plainTexts.size >= PLAIN_TEXT_CACHE) plainTexts.clear()
    text = plainText(markdown)
    plainTexts.set(markdown, text)
  }
  return text
}

/** About `max` characters of `markdown` as plain text, around the query's first term. */
export function snippet(markdown: string, query: string, max = SNIPPET_CHARS): string {
  const text = plainTextOf(markdown)
  if (text.length <= max) return text
  const at = Math.max(0, firstMatch(text.toLowerCase(), queryTerms(query)))
  // A little context before the term, the rest after it.
  const want = Math.max(0, Math.min(at - Math.floor(max / 4), text.length - max))
  // Word boundaries of a window around the cut only: segmenting a whole chunk for each hit
  // would cost more than the search.
  const from = Math.max(0, want - SLACK)
  const window = text.slice(from, want + max + SLACK)
  const segments = segmenter.segment(window)
  const start = from + boundaryFrom(segments, want - from)
  const edge = from + boundaryUpTo(segments, start - from + max, window.length)
  // Words longer than half the snippet (a long URL) are cut where the snippet ends.
  const end = edge - start >= max / 2 ? edge : start + max
  const body = text.slice(start, end).trim()
  return `${start > 0 ? '…' : ''}${body}${end < text.length ? '…' : ''}`
}

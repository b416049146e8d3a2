// Packs the blocks of one section into chunk texts of at most maxTokens, greedily, in order.
// - A block that fits in the current chunk joins it; one that fits in an empty chunk starts the
//   next chunk whole (code blocks and tables are never cut then).
// - A bigger block is cut. Text: at lines, then sentences, then words, packed greedily (a piece
//   that starts a chunk repeats its line's indentation and `>` quote markers). Code: at lines,
//   each piece re-fenced with the opening line (fence + language) and the closing fence. Tables:
//   between rows, each piece repeating the header row and the rule; a row too big for a chunk
//   under the header is itself cut after `<br>` or at whitespace (unless the header takes more
//   than half of maxTokens). Cut code and tables start a chunk of their own.
// - The heading lines at the top of the section do not make a chunk of their own: when the first
//   block does not fit next to them it is cut into its units to fill the first chunk (the one case
//   where a block that would fit alone is cut). They stand alone only when even its first unit
//   (a word, a code line, a row under its header) does not fit next to them.
// - A unit that cannot be cut further (a word, a code line, a word of a row with the header) and is
//   bigger than maxTokens becomes a chunk of its own, over the limit (under the section's heading
//   lines when it comes first).
// - A chunk that starts right after a chunk whose last unit was text begins with up to
//   overlapTokens of that text's tail (whole sentences, else the last words): never code, never
//   table rows, never headings.
import type { Block, RowBlock } from './markdown.ts'
import { estimateTokens } from './tokens.ts'

export type PackLimits = { maxTokens: number; overlapTokens: number }

type Segment = { sep: string; text: string } | { sep: string; block: RowBlock; rows: string[] }
/** A line, or a piece of a line; `cont` when it continues the line after the first piece. */
type Unit = { text: string; sep: string; prefix: string; cont: boolean }
/** The text at the end of a chunk (without its quote prefix), where the overlap comes from. */
type Tail = { text: string; prefix: string }

const LINE_PREFIX = /^[ \t]*(?:>[ \t]?)*/
const SENTENCE_END = /(?<=[.!?。！？][)\]"'”’]*)\s+|(?<=[。！？])(?=\S)/

export function packSection(blocks: readonly Block[], limits: PackLimits): string[] {
  const { maxTokens: max, overlapTokens } = limits
  const chunks: string[] = []
  let segments: Segment[] = []
  let used = 0
  let hasContent = false
  let tail: Tail | null = null
  let rowsOf: { block: RowBlock; rows: string[] } | null = null

  const sepCost = (sep: string) => (segments.length > 0 ? estimateTokens(sep) : 0)
  const fits = (sep: string, tokens: number) => used + sepCost(sep) + tokens <= max

  const push = (sep: string, text: string, tokens: number) => {
    used += sepCost(sep) + tokens
    segments.push({ sep, text })
    rowsOf = null
  }

  const flush = (): Tail | null => {
    const last = tail
    if (segments.length > 0) chunks.push(render(segments))
    segments = []
    used = 0
    hasContent = false
    tail = null
    rowsOf = null
    return last
  }

  // Ends the chunk and opens the next one with the overlap, if the previous chunk ended in text
  // and the overlap fits next to the `tokens` that come after it behind `sep`.
  const restart = (sep: string, tokens: number) => {
    const previous = flush()
    const budget = Math.min(overlapTokens, max - tokens - estimateTokens(sep))
    const overlap = previous && budget > 0 ? overlapOf(previous, budget) : null
    if (overlap) {
      segments.push({ sep: '', text: overlap })
      used = estimateTokens(overlap)
      hasContent = true
    }
  }

  // Makes room for `tokens` behind `sep` (`alone`: their cost at the top of an empty chunk): keeps
  // the chunk when they fit, or when it holds only heading lines and they would not fit an empty
  // chunk either (an unsplittable unit then goes over the limit under its heading rather than
  // leave the heading alone); otherwise starts the next chunk, with the overlap when asked.
  const makeRoom = (sep: string, tokens: number, alone: number, overlap: boolean) => {
    if (segments.length === 0 || fits(sep, tokens) || (!hasContent && alone > max)) return
    if (overlap) restart(sep, tokens)
    else flush()
  }

  const placeText = (unit: Unit) => {
    if (segments.length === 0) {
      const text = unit.cont ? unit.prefix + unit.text : unit.text
      push('', text, estimateTokens(text))
    } else {
      push(unit.cont ? ' ' : unit.sep, unit.text, estimateTokens(unit.text))
    }
    hasContent = true
    tail = {
      text: unit.cont ? unit.text : unit.text.slice(unit.prefix.length),
      prefix: unit.prefix,
    }
  }

  const addText = (unit: Unit, level: number) => {
    const tokens = estimateTokens(unit.text)
    const alone = unit.cont ? estimateTokens(unit.prefix) + tokens : tokens
    if (segments.length === 0 ? alone <= max : fits(unit.cont ? ' ' : unit.sep, tokens)) {
      placeText(unit)
      return
    }
    const pieces = level < 2 && (alone > max || !hasContent) ? cut(unit.text, level) : []
    if (pieces.length > 1) {
      pieces.forEach((text, i) => {
        addText(i === 0 ? { ...unit, text } : { ...unit, text, cont: true }, level + 1)
      })
    } else if (level < 2 && pieces.length === 1) {
      addText(unit, level + 1)
    } else {
      makeRoom(unit.cont ? ' ' : unit.sep, tokens, alone, true)
      placeText(unit)
    }
  }

  const addRows = (block: RowBlock) => {
    if (hasContent) flush()
    const wrap = estimateTokens(block.head) + 1 + (block.tail ? estimateTokens(block.tail) + 1 : 0)
    const room = max - wrap
    const rows =
      block.kind === 'table' && room >= max / 2
        ? block.rows.flatMap((row) => (estimateTokens(row) > room ? cutRow(row, room) : [row]))
        : block.rows
    for (const row of rows) {
      const tokens = estimateTokens(row)
      if (rowsOf?.block === block && used + 1 + tokens <= max) {
        rowsOf.rows.push(row)
        used += 1 + tokens
        continue
      }
      makeRoom('\n\n', wrap + tokens, wrap + tokens, false)
      used += sepCost('\n\n') + wrap + tokens
      rowsOf = { block, rows: [row] }
      segments.push({ sep: '\n\n', ...rowsOf })
      hasContent = true
    }
    tail = null
  }

  const addBlock = (block: Block) => {
    used += sepCost('\n\n') + block.tokens
    segments.push({ sep: '\n\n', text: block.text })
    rowsOf = null
    if (block.kind !== 'heading') hasContent = true
    tail = block.kind === 'text' ? tailOfBlock(block.text) : null
  }

  for (const block of blocks) {
    if (fits('\n\n', block.tokens)) {
      addBlock(block)
    } else if (block.kind === 'heading') {
      flush()
      addBlock(block)
    } else if (block.tokens <= max && hasContent) {
      restart('\n\n', block.tokens)
      addBlock(block)
    } else if (block.kind === 'text') {
      block.text.split('\n').forEach((line, i) => {
        addText(
          { text: line, sep: i === 0 ? '\n\n' : '\n', prefix: prefixOf(line), cont: false },
          0,
        )
      })
    } else if (block.rows.length > 0) {
      addRows(block)
    } else {
      makeRoom('\n\n', block.tokens, block.tokens, false)
      addBlock(block)
    }
  }
  flush()
  return chunks
}

function render(segments: Segment[]): string {
  let out = ''
  segments.forEach((segment, i) => {
    const text =
      'text' in segment
        ? segment.text
        : [
            segment.block.head,
            ...segment.rows,
            ...(segment.block.tail ? [segment.block.tail] : []),
          ].join('\n')
    out += i === 0 ? text : segment.sep + text
  })
  return out.trim()
}

/** Splits a line into sentences (level 0) or a sentence into words (level 1). */
function cut(text: string, level: number): string[] {
  const pieces = level === 0 ? text.split(SENTENCE_END) : text.split(/\s+/)
  return pieces.filter((piece) => piece.trim() !== '')
}

/** Cuts a table row into pieces of at most `budget` tokens, after `<br>` or at whitespace. */
function cutRow(row: string, budget: number): string[] {
  // words at even indexes, the text between them (whitespace, or '' after a <br>) at odd ones
  const parts = row.trim().split(/((?<=<br>)|\s+)/)
  const pieces: string[] = []
  let piece = parts[0] as string
  let used = estimateTokens(piece)
  for (let i = 1; i < parts.length; i += 2) {
    const between = parts[i] as string
    const word = parts[i + 1] as string
    const tokens = estimateTokens(word)
    if (used + estimateTokens(between) + tokens > budget) {
      pieces.push(piece)
      piece = word
      used = tokens
    } else {
      piece += between + word
      used += estimateTokens(between) + tokens
    }
  }
  pieces.push(piece)
  return pieces
}

/** The indentation and `>` quote markers a line starts with (possibly ''). */
function prefixOf(line: string): string {
  return (LINE_PREFIX.exec(line) as RegExpExecArray)[0]
}

function tailOfBlock(text: string): Tail {
  const line = text.slice(text.lastIndexOf('\n') + 1)
  const prefix = prefixOf(line)
  return { text: line.slice(prefix.length), prefix }
}

/** The last whole sentences of `tail` within `budget` tokens, else its last words; or null. */
function overlapOf(tail: Tail, budget: number): string | null {
  const room = budget - estimateTokens(tail.prefix)
  const sentences = cut(tail.text, 0)
  let picked = lastWithin(sentences, room)
  if (picked.length === 0) picked = lastWithin(cut(sentences.slice(-1).join(''), 1), room)
  return picked.length > 0 ? tail.prefix + picked.join(' ') : null
}

function lastWithin(pieces: string[], budget: number): string[] {
  let total = 0
  let start = pieces.length
  while (start > 0) {
    const tokens = estimateTokens(pieces[start - 1] as string)
    if (total + tokens > budget) break
    total += tokens
    start--
  }
  return pieces.slice(start)
}

// Splits a page's markdown into sections (one per ATX heading) made of blocks: paragraphs, lists
// and quotes (runs of non-blank lines), fenced code blocks and GFM tables. Lines inside a fence are
// code, never headings; a fence may be indented (inside a list item) and is dedented to its
// opening line so that it stays valid at the start of a chunk; an unclosed fence runs to the end
// of the page and gets a closing line.
import { estimateTokens } from './tokens.ts'

export type TextBlock = { kind: 'text'; text: string; tokens: number }
export type HeadingBlock = { kind: 'heading'; text: string; tokens: number }
/** A block that is split between `rows` with `head` (and `tail`) repeated around each piece. */
export type RowBlock = {
  kind: 'code' | 'table'
  text: string
  tokens: number
  head: string
  tail: string
  rows: string[]
}
export type Block = HeadingBlock | TextBlock | RowBlock
export type Heading = { level: number; line: string; markdown: string }
export type Section = { heading: Heading | null; blocks: Block[] }

const FENCE = /^([ \t]*)(`{3,}|~{3,})(.*)$/
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*))?$/
const TABLE_RULE = /^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/

export function parseSections(markdown: string): Section[] {
  const sections: Section[] = [{ heading: null, blocks: [] }]
  let blocks = (sections[0] as Section).blocks
  let run: string[] = []
  let fence: { indent: string; marker: string; lines: string[] } | null = null

  const endRun = () => {
    if (run.length > 0) blocks.push(runBlock(run))
    run = []
  }

  const source = markdown.includes('\r') ? markdown.replace(/\r\n?/g, '\n') : markdown
  for (const line of source.split('\n')) {
    if (fence) {
      const close = FENCE.exec(line)
      if (
        close &&
        (close[3] as string).trim() === '' &&
        (close[2] as string)[0] === fence.marker[0] &&
        (close[2] as string).length >= fence.marker.length
      ) {
        blocks.push(codeBlock(fence.indent, fence.lines, line))
        fence = null
      } else {
        fence.lines.push(line)
      }
      continue
    }
    const open = FENCE.exec(line)
    const marker = open?.[2] as string
    // a backtick fence's info string cannot hold a backtick: ```a``` is inline code
    if (open && !(marker.startsWith('`') && (open[3] as string).includes('`'))) {
      endRun()
      fence = { indent: open[1] as string, marker, lines: [line] }
      continue
    }
    const heading = HEADING.exec(line)
    const text = heading?.[2]?.replace(/(?:^|[ \t]+)#+[ \t]*$/, '').trim()
    if (heading && text) {
      endRun()
      blocks = []
      sections.push({
        heading: { level: (heading[1] as string).length, line: line.trim(), markdown: text },
        blocks,
      })
    } else if (line.trim() === '') {
      endRun()
    } else {
      run.push(line)
    }
  }
  if (fence) blocks.push(codeBlock(fence.indent, fence.lines, fence.marker))
  endRun()
  return sections
}

function runBlock(lines: string[]): Block {
  const [header = '', rule = ''] = lines
  if (lines.length >= 2 && header.includes('|') && rule.includes('|') && TABLE_RULE.test(rule)) {
    const [head1 = '', head2 = '', ...rows] = dedentAll(lines, leadingSpace(header))
    return rowBlock('table', `${head1}\n${head2}`, '', rows)
  }
  const text = lines.join('\n')
  return { kind: 'text', text, tokens: estimateTokens(text) }
}

function codeBlock(indent: string, lines: string[], close: string): Block {
  const [open = '', ...rows] = dedentAll(lines, indent)
  return rowBlock('code', open, dedent(close, indent), rows)
}

function rowBlock(kind: RowBlock['kind'], head: string, tail: string, rows: string[]): RowBlock {
  const body = rows.length > 0 ? `\n${rows.join('\n')}` : ''
  const text = `${head}${body}${tail ? `\n${tail}` : ''}`
  return { kind, text, tokens: estimateTokens(text), head, tail, rows }
}

function leadingSpace(line: string): string {
  return (/^[ \t]*/.exec(line) as RegExpExecArray)[0]
}

function dedentAll(lines: string[], indent: string): string[] {
  return indent === '' ? lines : lines.map((line) => dedent(line, indent))
}

/** Removes up to `indent.length` leading spaces and tabs. */
function dedent(line: string, indent: string): string {
  return line.slice(Math.min(leadingSpace(line).length, indent.length))
}

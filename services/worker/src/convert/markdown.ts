import { strikethrough, taskListItems } from '@joplin/turndown-plugin-gfm'
import TurndownService from 'turndown'

// Pass 2 of the converter: the HTML written by pass 1 → GitHub-flavoured markdown with turndown.
// The GFM plugin gives strikethrough and task list items; tables, code blocks, statuses and line
// breaks have rules of their own (linear, and aware of the code bodies set aside in pass 1).

type Pass = { code: readonly string[]; lifted: string[] }

type TNode = TurndownService.Node & {
  getAttribute(name: string): string | null
  parentNode: TNode | null
  previousSibling: TNode | null
  childNodes: ArrayLike<TNode>
}

const inCell = (node: TNode): boolean => {
  for (let p = node.parentNode; p !== null; p = p.parentNode) {
    if (p.nodeName === 'TD' || p.nodeName === 'TH') return true
  }
  return false
}

/** A fence longer than any run of backticks in the body, so the body cannot close it. */
export function fence(body: string): string {
  let longest = 0
  for (const run of body.match(/`+/g) ?? []) longest = Math.max(longest, run.length)
  return '`'.repeat(Math.max(3, longest + 1))
}

export function fencedBlock(body: string, language: string): string {
  const f = fence(body)
  const end = body.endsWith('\n') ? '' : '\n'
  return `${f}${language}\n${body}${end}${f}`
}

// Stryker disable next-line ObjectLiteral,ArrayDeclaration: never read, toMarkdown sets `current` before every turndown call
let current: Pass = { code: [], lifted: [] }
let service: TurndownService | undefined

function build(): TurndownService {
  const td = new TurndownService({
    // Stryker disable next-line StringLiteral: turndown writes atx headings for any style but 'setext'
    headingStyle: 'atx',
    // Stryker disable next-line StringLiteral: read only by turndown's rules for <pre><code>, which pass 1 never writes (every <pre> becomes a code-body placeholder)
    codeBlockStyle: 'fenced',
    // Stryker disable next-line StringLiteral: read only by turndown's own list item rule, replaced by list-item here
    bulletListMarker: '-',
    emDelimiter: '_',
    strongDelimiter: '**',
    hr: '---',
    // Stryker disable next-line StringLiteral: read only by turndown's own <br> rule, replaced by line-break here
    br: '\\',
  })
  td.use([strikethrough, taskListItems])
  // Text that looks like a tag (`<p>` written in a sentence) is escaped so renderers show it.
  const escapeMarkdown = td.escape.bind(td)
  td.escape = (text: string) => escapeMarkdown(text).replace(/<(?=[A-Za-z/!?])/g, '\\<')

  // Stryker disable next-line StringLiteral: turndown ignores a rule's key (Rules.add unshifts the rule alone)
  td.addRule('code-body', {
    filter: (node) => node.nodeName === 'PRE' && (node as TNode).getAttribute('data-code') !== null,
    replacement: (_content, node) => {
      const el = node as TNode
      // Pass 1 sets both attributes on every code placeholder.
      const body = current.code[Number(el.getAttribute('data-code'))] as string
      const block = fencedBlock(body, el.getAttribute('data-lang') as string)
      if (!inCell(el)) return `\n\n${block}\n\n`
      // A table cell cannot hold a fenced block: it follows the table, and the cell points at it.
      current.lifted.push(block)
      return `(code block ${current.lifted.length} below the table)`
    },
  })
  // Stryker disable next-line StringLiteral: turndown ignores a rule's key (Rules.add unshifts the rule alone)
  td.addRule('markdown-body', {
    filter: (node) =>
      node.nodeName === 'DIV' && (node as TNode).getAttribute('data-markdown') !== null,
    replacement: (_content, node) => {
      const body = current.code[Number((node as TNode).getAttribute('data-markdown'))] as string
      return `\n\n${body.trim()}\n\n`
    },
  })
  // Stryker disable next-line StringLiteral: turndown ignores a rule's key (Rules.add unshifts the rule alone)
  td.addRule('status', {
    filter: (node) => node.nodeName === 'CB-STATUS',
    replacement: (content) => `[${content.trim()}]`,
  })
  // Tight list items ("- x", "1. x"), continuation lines indented under the text. The item's
  // number comes from an index of its list built once (turndown's own rule searches the list
  // for every item, which is quadratic on long lists).
  const positions = new WeakMap<object, Map<object, number>>()
  // Stryker disable next-line StringLiteral: turndown ignores a rule's key (Rules.add unshifts the rule alone)
  td.addRule('list-item', {
    filter: 'li',
    replacement: (content, node) => {
      const el = node as TNode
      const parent = el.parentNode
      let prefix = '- '
      // Stryker disable next-line OptionalChaining: a list item always has a parent in turndown's tree
      if (parent?.nodeName === 'OL') {
        let index = positions.get(parent)
        if (index === undefined) {
          index = new Map()
          let i = 0
          for (const c of Array.from(parent.childNodes as ArrayLike<TNode>))
            if (c.nodeName === 'LI') index.set(c, i++)
          // Stryker disable next-line CallExpression: the index is only a cache, rebuilt the same when missing
          positions.set(parent, index)
        }
        // Stryker disable next-line StringLiteral: parseInt('') is NaN, and NaN || 1 is 1 like '1'
        const start = Number.parseInt(parent.getAttribute('start') ?? '1', 10) || 1
        prefix = `${start + (index.get(el) as number)}. `
      }
      const text = content.replace(/^\n+/, '').replace(/\n+$/, '')
      const indented = text.replace(/\n/g, `\n${' '.repeat(prefix.length)}`)
      return `${prefix}${indented}\n`
    },
  })
  // Stryker disable next-line StringLiteral: turndown ignores a rule's key (Rules.add unshifts the rule alone)
  td.addRule('line-break', {
    filter: 'br',
    replacement: (_content, node) => (inCell(node as TNode) ? '<br>' : '\\\n'),
  })
  // Stryker disable next-line StringLiteral: turndown ignores a rule's key (Rules.add unshifts the rule alone)
  td.addRule('table-section', {
    // Stryker disable next-line ArrayDeclaration,StringLiteral: pass 1 writes no table sections; the tbody the HTML parser adds is a block whose blank lines the table rule trims
    filter: ['thead', 'tbody', 'tfoot'],
    replacement: (content) => content,
  })
  // Stryker disable next-line StringLiteral: turndown ignores a rule's key (Rules.add unshifts the rule alone)
  td.addRule('table-cell', {
    filter: ['th', 'td'],
    replacement: (content) => {
      const text = content
        .trim()
        .replace(/\s*\n+\s*/g, '<br>')
        // Every pipe: a backslash before one is text (turndown has escaped it), not an escape.
        .replace(/\|/g, '\\|')
      return ` ${text} |`
    },
  })
  // Stryker disable next-line StringLiteral: turndown ignores a rule's key (Rules.add unshifts the rule alone)
  td.addRule('table-row', {
    filter: 'tr',
    replacement: (content, node) => {
      const row = `|${content}\n`
      const el = node as TNode
      if (el.previousSibling !== null) return row
      // Rows of a rebuilt table hold cells only, one per column.
      return `${row}|${' --- |'.repeat(el.childNodes.length)}\n`
    },
  })
  // Stryker disable next-line StringLiteral: turndown ignores a rule's key (Rules.add unshifts the rule alone)
  td.addRule('table', {
    filter: 'table',
    replacement: (content) => {
      const lifted = current.lifted.splice(0)
      const after = lifted.map((block, i) => `Code block ${i + 1}:\n\n${block}`).join('\n\n')
      return `\n\n${content.trim()}\n\n${after}\n\n`
    },
  })
  return td
}

export function toMarkdown(html: string, code: readonly string[]): string {
  service ??= build()
  current = { code, lifted: [] }
  try {
    return service.turndown(html)
  } finally /* Stryker disable next-line BlockStatement: the next toMarkdown call sets `current` before reading it */ {
    // Stryker disable next-line ObjectLiteral,ArrayDeclaration: the next toMarkdown call sets `current` before reading it
    current = { code: [], lifted: [] }
  }
}

/**
 * Stable whitespace outside code blocks: no trailing spaces, no non-breaking spaces, no runs of
 * blank lines, one final newline. Fenced code is left exactly as it is.
 */
export function normalizeWhitespace(markdown: string): string {
  const out: string[] = []
  let openFence: string | undefined
  // Stryker disable next-line UnaryOperator: endBlock resets it to -1; before the first endBlock, out is empty unless a text line has set it
  let lastText = -1 // index in `out` of the last line outside code, while it may end a block
  const endBlock = () => {
    // A line break with nothing after it (`<p>text<br/></p>`) breaks nothing.
    const line = out[lastText]
    if (line !== undefined && /[^\\]\\$/.test(line)) out[lastText] = line.slice(0, -1).trimEnd()
    lastText = -1
  }
  for (const raw of markdown.split('\n')) {
    if (openFence !== undefined) {
      out.push(raw)
      // A fence may sit in a blockquote (a panel) or a list item: look past `>` and indentation.
      const t = raw.replace(/^[\s>]*/, '').trim()
      if (/^`+$/.test(t) && t.length >= openFence.length) openFence = undefined
      continue
    }
    let line = raw.replace(/\u00a0/g, ' ').replace(/[ \t]+$/, '')
    if (line === '\\') line = ''
    const opening = /^[\s>]*(`{3,})/.exec(line)
    if (line === '' || opening) endBlock()
    if (opening) openFence = opening[1]
    if (line === '') {
      if (out.length === 0 || out.at(-1) === '') continue
    } else if (!opening) lastText = out.length
    out.push(line)
  }
  endBlock()
  while (out.length > 0 && out.at(-1) === '') out.pop()
  return out.length === 0 ? '' : `${out.join('\n')}\n`
}

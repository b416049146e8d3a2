import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { basename, join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import type {
  ChildNode,
  Element,
} from '../../../services/worker/node_modules/domhandler/dist/index.js'
import { parseDocument } from '../../../services/worker/node_modules/htmlparser2/dist/index.js'
import { convertStorage } from '../../../services/worker/src/convert/index.ts'
import { NAVIGATION_MACROS } from '../../../services/worker/src/convert/storage.ts'

// The converter against every storage-format page in ../shared/fixtures/confluence (real pages
// and other tools' test material, see its README). Each page is checked for what must never be
// lost, independently of how the converter writes it:
//   - it converts without throwing (and without falling back to plain text);
//   - no Confluence tag (`<ac:`, `<ri:`) and no HTML-escaped tag (`&lt;p&gt;`) outside fenced
//     code, unless the page's own visible text says so;
//   - every code/noformat macro body is inside a fenced block, byte for byte (after removing
//     the block's list indentation or blockquote prefix);
//   - one GFM table per top-level table;
//   - every page link is a markdown link (its URL names the page, or its text is the link's),
//     outside code spans;
//   - every heading outside tables is a one-line ATX heading holding its text;
//   - at least 98 % of the visible words are kept (text outside macro parameters, raw macro
//     bodies and navigation macros; see wordsKept).
// Failures name the file and list what failed; the summary at the end counts them by kind.

const FIXTURES = fileURLToPath(new URL('../../../../shared/fixtures/confluence/', import.meta.url))
const MIN_WORDS_KEPT = 0.98

type Source = { name: string; storage: string }

// ---------------------------------------------------------------------------------------------
// Which files hold storage format

function walk(dir: string): string[] {
  const files: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) files.push(...walk(path))
    else if (entry.isFile()) files.push(path)
  }
  return files.sort()
}

/**
 * Per folder, from looking at the files:
 *   - `*.xhtml`: storage bodies (querypie `page.xhtml`; xwiki `extracted-storage-bodies/` and
 *     `extracted-syntax-test-inputs/`);
 *   - `*.xml`: storage (md2conf `tests/target/`, xwiki `*.in.xml`), except xwiki's
 *     `entities.xml`, Hibernate dumps of whole space backups whose bodies are the extracted ones;
 *   - `*.html`: storage only in kovetskiy `testdata/` (what mark publishes for the `.md` beside
 *     it); elsewhere it is rendered HTML (querypie `page.html`, bdfinst's HTML space export);
 *   - `*.json`: REST responses, whose `body.storage.value` strings are storage;
 *   - the rest (`.md`, `.mdx`, `.adf`, `.yaml`, xwiki `.test`, zips) is not storage.
 */
function kindOf(rel: string): 'storage' | 'json' | undefined {
  if (rel.endsWith('.xhtml')) return 'storage'
  if (rel.endsWith('.xml')) return basename(rel) === 'entities.xml' ? undefined : 'storage'
  if (rel.endsWith('.html'))
    return rel.startsWith('kovetskiy__mark/testdata/') ? 'storage' : undefined
  if (rel.endsWith('.json')) return 'json'
  return undefined
}

/** Every `body.storage.value` string in a REST response (a page, a list, search results). */
function storageBodies(value: unknown, path: string, out: Array<[string, string]>): void {
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      storageBodies(item, `${path}[${i}]`, out)
    })
  } else if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>
    const body = record.body as { storage?: { value?: unknown } } | undefined
    if (typeof body?.storage?.value === 'string') {
      out.push([`${path ? `${path}.` : ''}body.storage.value`, body.storage.value])
    }
    for (const [key, inner] of Object.entries(record)) {
      if (key !== 'body') storageBodies(inner, path ? `${path}.${key}` : key, out)
    }
  }
}

function sources(): { list: Source[]; duplicates: number } {
  const list: Source[] = []
  const seen = new Set<string>()
  let duplicates = 0
  const add = (name: string, storage: string) => {
    if (seen.has(storage)) duplicates++
    else {
      seen.add(storage)
      list.push({ name, storage })
    }
  }
  const files = walk(FIXTURES).map((path) => relative(FIXTURES, path).split(sep).join('/'))
  for (const rel of files) {
    if (kindOf(rel) !== 'storage') continue
    let storage = readFileSync(join(FIXTURES, rel), 'utf8')
    // These bodies come out of XML space backups, which write a `]]>` inside a page body as
    // `]] >` (the body sits in a CDATA section of its own there); the storage format is restored.
    if (rel.startsWith('xwiki-contrib__confluence/extracted-storage-bodies/')) {
      storage = storage.replaceAll(']] >', ']]>')
    }
    add(rel, storage)
  }
  // REST bodies after the files, so a body that is also a file (querypie `page.v1.json` holds
  // its `page.xhtml`) is counted once, under the file's name.
  for (const rel of files) {
    if (kindOf(rel) !== 'json') continue
    const found: Array<[string, string]> = []
    storageBodies(JSON.parse(readFileSync(join(FIXTURES, rel), 'utf8')), '', found)
    for (const [path, storage] of found) add(`${rel}#${path}`, storage)
  }
  return { list, duplicates }
}

// ---------------------------------------------------------------------------------------------
// What the input holds

const PARSE = {
  recognizeCDATA: true,
  recognizeSelfClosing: true,
  decodeEntities: true,
  lowerCaseTags: true,
  lowerCaseAttributeNames: true,
}

// Macros whose body is navigation are dropped by the converter: their content is not counted.
const NAVIGATION = NAVIGATION_MACROS
const CODE = new Set(['code', 'noformat'])
/** Elements whose text is not shown on the page, or is a raw macro body (code is checked apart). */
const HIDDEN = new Set([
  'ac:parameter',
  'ac:default-parameter',
  'ac:placeholder',
  'ac:plain-text-body',
  'ac:task-id',
  'ac:task-uuid',
  'ac:task-status',
  'ac:adf-attribute',
  'script',
  'style',
  'head',
  'title',
])
/** Elements that run on within a line; any other element boundary separates words. */
const INLINE = new Set([
  'a',
  'abbr',
  'b',
  'big',
  'cite',
  'code',
  'del',
  'em',
  'font',
  'i',
  'ins',
  'kbd',
  'mark',
  'q',
  's',
  'samp',
  'small',
  'span',
  'strike',
  'strong',
  'sub',
  'sup',
  'time',
  'tt',
  'u',
  'var',
  'ac:link',
  'ac:link-body',
  'ac:plain-text-link-body',
  'ac:inline-comment-marker',
  'ac:emoticon',
])

const isElement = (n: ChildNode): n is Element =>
  n.type === 'tag' || n.type === 'script' || n.type === 'style'
const childElements = (el: Element) => el.children.filter(isElement)
const child = (el: Element, name: string) => childElements(el).find((c) => c.name === name)

function textOf(node: ChildNode): string {
  if (node.type === 'text') return node.data
  return 'children' in node ? node.children.map(textOf).join('') : ''
}

type PageLink = { title: string; text: string }
type Expected = {
  /** The page's visible text, element boundaries as spaces. */
  text: string
  code: Array<{ macro: string; body: string }>
  tables: number
  pageLinks: PageLink[]
  /** The visible text of each heading outside tables. */
  headings: string[]
}

function hasCells(table: Element): boolean {
  return childElements(table).some(
    (c) => c.name === 'td' || c.name === 'th' || (c.name !== 'table' && hasCells(c)),
  )
}

function analyse(storage: string): Expected {
  const expected: Expected = { text: '', code: [], tables: 0, pageLinks: [], headings: [] }
  const visit = (node: ChildNode, inTable: boolean): void => {
    if (node.type === 'text') {
      expected.text += node.data
      return
    }
    if (node.type === 'cdata') {
      expected.text += textOf(node) // a plain-text link body
      return
    }
    if (!isElement(node) || HIDDEN.has(node.name)) return
    const name = node.name
    if (name === 'ac:structured-macro' || name === 'ac:macro') {
      const macro = (node.attribs['ac:name'] ?? '').toLowerCase()
      if (NAVIGATION.has(macro)) return
      const body = child(node, 'ac:plain-text-body')
      if (CODE.has(macro) && body) expected.code.push({ macro, body: textOf(body) })
    }
    // An ADF extension shows its content; the fallback is the same for older renderers.
    if (name === 'ac:adf-fallback' && node.parent && isElement(node.parent as ChildNode)) {
      const adf = child(node.parent as Element, 'ac:adf-node')
      if (adf && child(adf, 'ac:adf-content')) return
    }
    if (name === 'table' && !inTable && hasCells(node)) expected.tables++
    if (name === 'ac:link') {
      const page = child(node, 'ri:page')
      const title = page?.attribs['ri:content-title'] ?? ''
      if (title) {
        const body = child(node, 'ac:plain-text-link-body') ?? child(node, 'ac:link-body')
        expected.pageLinks.push({
          title,
          text: body ? textOf(body).replace(/\s+/g, ' ').trim() : '',
        })
      }
    }
    const block = !INLINE.has(name) && !name.startsWith('ri:')
    if (block) expected.text += ' '
    const start = expected.text.length
    for (const c of node.children) visit(c, inTable || name === 'table')
    if (/^h[1-6]$/.test(name) && !inTable) {
      const heading = expected.text.slice(start).replace(/\s+/g, ' ').trim()
      if (letters(heading) !== '') expected.headings.push(heading)
    }
    if (block) expected.text += ' '
  }
  for (const node of parseDocument(storage, PARSE).children) visit(node, false)
  return expected
}

// ---------------------------------------------------------------------------------------------
// What the output holds

type Output = { prose: string; blocks: string[] }

const FENCE_OPEN = /^((?:[ \t]*>[ \t]?)*[ \t]*)(`{3,}|~{3,})([^`]*)$/

/** Fenced blocks (prefix of list indentation / blockquote markers removed) and the rest. */
function splitFences(markdown: string): Output {
  const prose: string[] = []
  const blocks: string[] = []
  const lines = markdown.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE_OPEN.exec(lines[i] as string)
    if (!open) {
      prose.push(lines[i] as string)
      continue
    }
    const prefix = open[1] as string
    const fence = open[2] as string
    const body: string[] = []
    for (i++; i < lines.length; i++) {
      const line = lines[i] as string
      let k = 0
      while (k < prefix.length && line[k] === prefix[k]) k++
      const rest = line.slice(k)
      const close = rest.trim()
      if (close.length >= fence.length && close === (fence[0] as string).repeat(close.length)) break
      body.push(rest)
    }
    blocks.push(body.join('\n'))
  }
  return { prose: prose.join('\n'), blocks }
}

const HEADING = /^[\s>]*(?:(?:[-*+]|\d+\.)\s+)*#{1,6}\s+(.*)$/
const headingLines = (prose: string) =>
  prose
    .split('\n')
    .map((line) => HEADING.exec(line)?.[1])
    .filter((text) => text !== undefined)
    .map((text) => letters(text.replace(/\]\((?:\\.|[^\\)])*\)/g, ']')))

const GFM_SEPARATOR = /^\|(?:\s*:?-{3,}:?\s*\|)+\s*$/
const countTables = (prose: string) =>
  prose.split('\n').filter((line) => GFM_SEPARATOR.test(line.replace(/^[\s>]*/, ''))).length

const MD_LINK = /\[((?:\\.|[^\\\]])*)\]\(((?:\\.|[^\\)\s])*)(?:\s+"(?:\\.|[^"\\])*")?\)/g
const unescapeMd = (s: string) => s.replace(/\\(.)/g, '$1')
const letters = (s: string) =>
  s
    .normalize('NFC')
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}]+/gu, '')

/** Markdown links, except inside code spans (where they are text). */
function links(prose: string): Array<{ text: string; url: string }> {
  const text = prose.replace(/(`+)[^`]*?\1/g, ' ')
  return [...text.matchAll(MD_LINK)].map((m) => ({
    text: unescapeMd(m[1] as string),
    url: unescapeMd(m[2] as string),
  }))
}

function linkFound(link: PageLink, found: Array<{ text: string; url: string }>): boolean {
  const titles = [
    encodeURIComponent(link.title),
    encodeURIComponent(link.title).replace(/%20/g, '+'),
    link.title,
  ]
  const texts = [letters(link.title), letters(link.text)].filter((s) => s !== '')
  return found.some(
    (f) => titles.some((title) => f.url.includes(title)) || texts.includes(letters(f.text)),
  )
}

// Tags that must not leak: Confluence elements, and any tag escaped into text.
const LEAKS: Array<[string, RegExp]> = [
  ['<ac:', /<\/?ac:/g],
  ['<ri:', /<\/?ri:/g],
  ['&lt;tag', /&lt;\/?(?:ac:|ri:|[a-z][a-z0-9]*(?:\s[^&]*)?\/?&gt;)/gi],
]

function leaks(prose: string, visibleText: string): string[] {
  const found: string[] = []
  for (const [label, pattern] of LEAKS) {
    const out = prose.match(pattern)?.length ?? 0
    const allowed = visibleText.match(pattern)?.length ?? 0
    if (out > allowed) {
      const one = new RegExp(pattern.source, pattern.flags.replace('g', ''))
      const line = prose.split('\n').find((l) => one.test(l)) ?? ''
      found.push(`${out - allowed}× ${label}: ${line.trim().slice(0, 160)}`)
    }
  }
  return found
}

const WORD = /[\p{L}\p{M}\p{N}]+/gu

/** How many times `needle` occurs in `haystack`, not overlapping, counting up to `max`. */
function occurrences(haystack: string, needle: string, max: number): number {
  let n = 0
  let at = haystack.indexOf(needle)
  while (at !== -1 && n < max) {
    n++
    at = haystack.indexOf(needle, at + needle.length)
  }
  return n
}

/**
 * Visible words kept: each input word (letters and digits, any script, so Korean too) is looked
 * up, as many times as it occurs, in the output's letters (link URLs removed, every other
 * character dropped, so markup and spacing differences do not count).
 */
function wordsKept(visibleText: string, markdown: string) {
  const counts = new Map<string, number>()
  for (const word of visibleText.normalize('NFC').toLowerCase().match(WORD) ?? []) {
    counts.set(word, (counts.get(word) ?? 0) + 1)
  }
  const stream = letters(
    markdown.replace(/\]\((?:\\.|[^\\)])*\)/g, '] ').replace(/<https?:[^>\s]*>/g, ' '),
  )
  let total = 0
  let kept = 0
  const missing: string[] = []
  for (const [word, n] of counts) {
    const found = occurrences(stream, word, n)
    total += n
    kept += found
    if (found < n) missing.push(n - found > 1 ? `${word} ×${n - found}` : word)
  }
  return { total, ratio: total === 0 ? 1 : kept / total, missing }
}

// ---------------------------------------------------------------------------------------------

const KINDS = [
  'throws',
  'plain-text fallback',
  'tag leak',
  'code',
  'tables',
  'page links',
  'headings',
  'words',
] as const
type Kind = (typeof KINDS)[number]

if (!existsSync(FIXTURES)) {
  t.skip(
    `fixture sweep: ${FIXTURES} is absent (the shared fixtures live beside the project)`,
    () => {},
  )
} else {
  const { list, duplicates } = sources()
  const failures = new Map<Kind, string[]>(KINDS.map((kind) => [kind, []]))
  const fail = (kind: Kind, name: string) => failures.get(kind)?.push(name)
  const checked = { code: 0, tables: 0, links: 0, headings: 0, words: 0 }
  const ratios: number[] = []

  for (const { name, storage } of list) {
    t.test(name, async (t) => {
      let markdown: string
      let warnings: string[]
      try {
        ;({ markdown, warnings } = convertStorage(storage))
      } catch (err) {
        fail('throws', name)
        t.fail(`throws: ${(err as Error).stack}`)
        return
      }
      const expected = analyse(storage)
      const { prose, blocks } = splitFences(markdown)

      const fallback = warnings.filter((w) => w.startsWith('converted as plain text'))
      if (fallback.length > 0) fail('plain-text fallback', name)
      t.same(fallback, [], 'no plain-text fallback')

      const leaked = leaks(prose, expected.text)
      if (leaked.length > 0) fail('tag leak', name)
      t.same(leaked, [], 'no tag leaks outside fenced code (listed: leaks)')

      const code = expected.code.filter(({ body }) => body.trim() !== '')
      checked.code += code.length
      const lostCode = code
        .filter(({ body }) => !blocks.some((block) => block === body.replace(/\n$/, '')))
        .map(({ macro, body }) => `${macro}: ${JSON.stringify(body.slice(0, 120))}`)
      if (lostCode.length > 0) fail('code', name)
      t.same(
        lostCode,
        [],
        `${code.length} code bodies verbatim in fenced blocks (listed: those not)`,
      )

      const tables = countTables(prose)
      checked.tables += expected.tables
      if (tables !== expected.tables) fail('tables', name)
      t.equal(tables, expected.tables, 'one GFM table per top-level table')

      const found = links(prose)
      checked.links += expected.pageLinks.length
      const lostLinks = expected.pageLinks
        .filter((link) => !linkFound(link, found))
        .map((link) => `${link.title}${link.text ? ` (text: ${link.text})` : ''}`)
      if (lostLinks.length > 0) fail('page links', name)
      t.same(
        lostLinks,
        [],
        `${expected.pageLinks.length} page links as markdown links (listed: those not)`,
      )

      const lines = headingLines(prose)
      checked.headings += expected.headings.length
      const lostHeadings = expected.headings.filter(
        (heading) => !lines.some((line) => line.includes(letters(heading))),
      )
      if (lostHeadings.length > 0) fail('headings', name)
      t.same(
        lostHeadings,
        [],
        `${expected.headings.length} headings as one-line ATX headings (listed: those not)`,
      )

      const kept = wordsKept(expected.text, markdown)
      ratios.push(kept.ratio)
      checked.words += kept.total
      if (kept.ratio < MIN_WORDS_KEPT) fail('words', name)
      t.ok(
        kept.ratio >= MIN_WORDS_KEPT,
        `${(kept.ratio * 100).toFixed(1)} % of ${kept.total} visible words kept`,
        kept.ratio < MIN_WORDS_KEPT ? { missing: kept.missing.slice(0, 60) } : {},
      )
    })
  }

  t.test('summary', async (t) => {
    const mean = ratios.reduce((a, b) => a + b, 0) / Math.max(1, ratios.length)
    const failed = new Set([...failures.values()].flat())
    t.comment(
      `fixture sweep: ${list.length} storage bodies (${duplicates} REST bodies identical to a ` +
        `file not repeated); ${list.length - failed.size} pass every check`,
    )
    t.comment(
      `checked: ${checked.code} code bodies, ${checked.tables} tables, ${checked.links} page ` +
        `links, ${checked.headings} headings, ${checked.words} visible words ` +
        `(kept per body: mean ${(mean * 100).toFixed(2)} %, lowest ` +
        `${(Math.min(1, ...ratios) * 100).toFixed(2)} %)`,
    )
    for (const kind of KINDS) {
      const names = failures.get(kind) ?? []
      const failing = names.length > 0 ? `; failing: ${names.join(', ')}` : ''
      t.comment(`${kind}: ${list.length - names.length}/${list.length} pass${failing}`)
    }
    t.pass('summary printed')
  })
}

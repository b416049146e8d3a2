/**
 * A storage-XHTML fuzzer over the converter and the chunker (issue 13, item 2): whatever a page
 * body holds — tag soup from Confluence's element set, malformed or unclosed nesting, thousands of
 * levels deep, huge tables, invalid UTF-8 decoded as Node decodes it, entity bombs, very long
 * attribute values — `convertStorage` returns markdown or throws only its documented
 * ConversionError (over `maxBytes`), every case finishes well inside a 5 s budget, the heap does
 * not keep what a batch of cases allocated, and `chunkMarkdown` over the result never throws and
 * keeps every chunk within `maxTokens` but for the exception it documents (one uncuttable unit).
 *
 * The CI variant is short (150 runs, a few seconds). The long variant and the reproduction of a
 * failure use the environment (and lift tap's 30 s per-file timeout):
 *   FUZZ_RUNS=5000 pnpm exec tap --disable-coverage -t 0 tests/worker/convert/fuzz.test.ts
 *   FUZZ_SEED=<seed printed on failure> FUZZ_RUNS=<runs> pnpm exec tap --disable-coverage ...
 * The seed is fixed unless FUZZ_SEED is set, so CI runs the same cases every time.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import fc from 'fast-check'
import t from 'tap'
import { chunkMarkdown, estimateTokens } from '../../../services/worker/src/chunk/index.ts'
import { ConversionError, convertStorage } from '../../../services/worker/src/convert/index.ts'

const SEED = Number(process.env.FUZZ_SEED ?? 20261205)
const RUNS = Number(process.env.FUZZ_RUNS ?? 150)
/** A case over this is a hang for our purposes; the max seen is printed, not asserted lower. */
const BUDGET_MS = 5_000

const PAGE = {
  pageId: '42',
  title: 'Fuzzed page',
  url: 'https://acme.atlassian.net/wiki/spaces/ENG/pages/42',
  space: 'ENG',
  ancestors: ['Home'],
}

// --- arbitraries -------------------------------------------------------------------------

const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom('&amp;', '&lt;', '&nbsp;', '&#0;', '&#xD800;', '&#x110000;', '&#99999999;'),
  fc.constantFrom('&bogus;', '&', '<', ']]>', '<!-- c', '-->', '<![CDATA[', '\u0000', '\uFFFE'),
  fc.constantFrom('# heading', '```', '| a | b |', '* item', '1. one', '> quote', '\n\n'),
)

const attrValue = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom('"', "'", '<>', '&amp;', 'javascript:alert(1)', '../../etc/passwd'),
)

/** Element names of storage format, and HTML that pages carry. */
const ELEMENTS = [
  'p',
  'span',
  'strong',
  'em',
  'code',
  'pre',
  'a',
  'br',
  'hr',
  'h1',
  'h3',
  'h6',
  'ul',
  'ol',
  'li',
  'table',
  'tbody',
  'tr',
  'th',
  'td',
  'blockquote',
  'div',
  'img',
  'ac:structured-macro',
  'ac:parameter',
  'ac:rich-text-body',
  'ac:plain-text-body',
  'ac:link',
  'ac:link-body',
  'ac:plain-text-link-body',
  'ac:image',
  'ac:emoticon',
  'ac:layout',
  'ac:layout-section',
  'ac:layout-cell',
  'ac:task-list',
  'ac:task',
  'ac:task-body',
  'ri:page',
  'ri:attachment',
  'ri:user',
  'ri:url',
  'ri:space',
] as const

const ATTRS = [
  'ac:name',
  'ri:content-title',
  'ri:space-key',
  'ri:filename',
  'ri:account-id',
  'ri:value',
  'ac:anchor',
  'href',
  'colspan',
  'rowspan',
  'class',
] as const

const MACROS = ['code', 'info', 'note', 'panel', 'expand', 'jira', 'toc', 'noformat', 'status', 'x']

const attrs = fc
  .array(fc.tuple(fc.constantFrom(...ATTRS), attrValue), { maxLength: 3 })
  .map((list) => list.map(([name, value]) => ` ${name}="${value}"`).join(''))

/** Random tag soup: well-formed, unclosed, stray closing tags, CDATA, comments. */
const { node } = fc.letrec<{ node: string }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    text,
    fc
      .tuple(
        fc.constantFrom(...ELEMENTS),
        attrs,
        fc.array(tie('node'), { maxLength: 4 }),
        fc.constantFrom('closed', 'unclosed', 'mismatched', 'self-closed'),
      )
      .map(([name, at, children, shape]) => {
        const inner = children.join('')
        if (shape === 'self-closed') return `<${name}${at}/>${inner}`
        if (shape === 'unclosed') return `<${name}${at}>${inner}`
        if (shape === 'mismatched') return `<${name}${at}>${inner}</em></${name}>`
        return `<${name}${at}>${inner}</${name}>`
      }),
    fc
      .tuple(fc.constantFrom(...MACROS), fc.string({ maxLength: 10 }), tie('node'))
      .map(
        ([name, param, body]) =>
          `<ac:structured-macro ac:name="${name}"><ac:parameter ac:name="language">${param}</ac:parameter>` +
          `<ac:rich-text-body>${body}</ac:rich-text-body></ac:structured-macro>`,
      ),
    fc
      .tuple(fc.string({ maxLength: 30 }), fc.boolean())
      .map(
        ([code, closed]) =>
          `<ac:structured-macro ac:name="code"><ac:plain-text-body><![CDATA[${code}${closed ? ']]>' : ''}` +
          '</ac:plain-text-body></ac:structured-macro>',
      ),
    fc
      .tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }))
      .map(
        ([title, label]) =>
          `<ac:link><ri:page ri:content-title="${title}"/><ac:plain-text-link-body><![CDATA[${label}]]>` +
          '</ac:plain-text-link-body></ac:link>',
      ),
  ),
}))

/** Thousands of levels of one construct, closed or not. */
const deep = fc
  .tuple(
    fc.constantFrom(
      ['<span>', '</span>'],
      ['<ul><li>', '</li></ul>'],
      ['<table><tr><td>', '</td></tr></table>'],
      ['<blockquote>', '</blockquote>'],
      ['<ac:layout-cell>', '</ac:layout-cell>'],
      [
        '<ac:structured-macro ac:name="expand"><ac:rich-text-body>',
        '</ac:rich-text-body></ac:structured-macro>',
      ],
      ['<ac:task-list><ac:task><ac:task-body>', '</ac:task-body></ac:task></ac:task-list>'],
    ),
    fc.integer({ min: 500, max: 4000 }),
    fc.boolean(),
  )
  .map(([[open, close], n, closed]) => `${open.repeat(n)}deep${closed ? close.repeat(n) : ''}`)

/** Many cells, sometimes ragged, spanning or nested one level. */
const hugeTable = fc
  .tuple(
    fc.integer({ min: 50, max: 600 }),
    fc.integer({ min: 1, max: 40 }),
    fc.boolean(),
    // Spans: none, or a colspan and rowspan on each row's first cell (they multiply the grid).
    fc.option(fc.tuple(fc.integer({ min: 1, max: 2000 }), fc.integer({ min: 1, max: 2000 }))),
  )
  .map(([rows, cols, ragged, spans]) => {
    const row = (r: number) => {
      const n = ragged ? 1 + ((r * 7) % cols) : cols
      const cell = (c: number) =>
        spans && c === 0
          ? `<td colspan="${spans[0]}" rowspan="${spans[1]}">r${r}</td>`
          : `<td>${r}.${c}|</td>`
      return `<tr>${Array.from({ length: n }, (_, c) => cell(c)).join('')}</tr>`
    }
    return `<table><tbody><tr><th>h</th></tr>${Array.from({ length: rows }, (_, r) => row(r)).join('')}</tbody></table>`
  })

/** Bytes that are not UTF-8, decoded as Node decodes a body (U+FFFD for each bad sequence). */
const invalidUtf8 = fc
  .uint8Array({ minLength: 1, maxLength: 2000 })
  .map((bytes) =>
    Buffer.concat([
      Buffer.from('<p>'),
      Buffer.from(bytes),
      Buffer.from([0xc3, 0x28, 0xff, 0xed, 0xa0, 0x80]),
    ]).toString('utf8'),
  )

/** Billion laughs in a DOCTYPE, entity references, numeric entities out of range. */
const entityBomb = fc.integer({ min: 2, max: 12 }).map((levels) => {
  const defs = ['<!ENTITY e0 "lol">']
  for (let i = 1; i < levels; i++) defs.push(`<!ENTITY e${i} "${`&e${i - 1};`.repeat(10)}">`)
  const refs = `&e${levels - 1};`.repeat(50)
  return `<!DOCTYPE p [${defs.join('')}]><p>${refs}</p><p>${'&#0;&#x0;&#65535;&#1114112;'.repeat(500)}</p>`
})

const longAttribute = fc
  .tuple(
    fc.constantFrom(...ATTRS),
    fc.integer({ min: 10_000, max: 300_000 }),
    fc.constantFrom('a', '"', '&amp;', ' '),
  )
  .map(
    ([name, n, unit]) =>
      `<ac:link><ri:page ${name}="${unit.repeat(n)}"/></ac:link><p ${name}="${unit.repeat(n)}">x</p>`,
  )

const storage = fc.oneof(
  fc.array(node, { maxLength: 8 }).map((nodes) => nodes.join('')),
  deep,
  hugeTable,
  invalidUtf8,
  entityBomb,
  longAttribute,
)

/** Usually the default limit; sometimes a small one, to provoke the documented refusal. */
const maxBytes = fc.oneof(
  { arbitrary: fc.constant(null), weight: 5 },
  { arbitrary: fc.integer({ min: 0, max: 4096 }), weight: 1 },
)
const maxTokens = fc.constantFrom(16, 64, 400)

// --- the property ------------------------------------------------------------------------

// A collection between measurements makes the heap figure mean something; V8 exposes gc() to a
// context made after the flag is set, without running the whole file under --expose-gc.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

t.test('convertStorage and chunkMarkdown survive hostile storage XHTML', async (t) => {
  let slowest = 0
  let refused = 0
  let overLimit = 0
  gc()
  const heapBefore = process.memoryUsage().heapUsed
  try {
    fc.assert(
      fc.property(storage, maxBytes, maxTokens, (body, max, tokens) => {
        const started = performance.now()
        let markdown: string
        try {
          const result = convertStorage(body, max === null ? {} : { maxBytes: max })
          markdown = result.markdown
          if (typeof markdown !== 'string') throw new Error('markdown is not a string')
          if (!Array.isArray(result.warnings)) throw new Error('warnings is not an array')
        } catch (err) {
          // The one documented throw: a body over the limit, saying so.
          if (!(err instanceof ConversionError)) throw err
          if (max === null || Buffer.byteLength(body) <= max) throw err
          refused++
          return
        }
        const chunks = chunkMarkdown(markdown, PAGE, { maxTokens: tokens })
        for (const chunk of chunks) {
          const estimate = estimateTokens(chunk.text)
          if (estimate !== chunk.tokens) {
            throw new Error(`chunk ${chunk.id} says ${chunk.tokens} tokens, is ${estimate}`)
          }
          // The chunker's documented exception to maxTokens (chunk/pack.ts): a unit it cannot cut
          // (a word, a code line, a table row's word under its header) bigger than the limit is a
          // chunk of its own. Such a unit sits on one line that alone costs a good part of the
          // limit; a chunk over the limit without such a line is a packing bug.
          if (estimate > tokens) {
            overLimit++
            const lines = chunk.text.split('\n')
            if (!lines.some((line) => estimateTokens(line) > tokens / 3)) {
              throw new Error(
                `chunk ${chunk.id} is ${estimate} tokens of short lines, limit ${tokens}`,
              )
            }
          }
        }
        const took = performance.now() - started
        slowest = Math.max(slowest, took)
        if (took > BUDGET_MS)
          throw new Error(`a case took ${Math.round(took)} ms (budget ${BUDGET_MS})`)
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    )
  } catch (err) {
    // fast-check's report carries the seed and the path; say how to replay it here.
    // The counterexample can be megabytes: its head is enough to see what it was.
    const { message, cause } = err as Error
    t.fail(
      `fuzzer failed: rerun with FUZZ_SEED=${SEED} FUZZ_RUNS=${RUNS}: ${String(cause)}\n${message.slice(0, 2000)}`,
    )
    return
  }
  gc()
  const grown = process.memoryUsage().heapUsed - heapBefore
  t.comment(
    `seed ${SEED}, ${RUNS} runs, ${refused} refused over maxBytes, ${overLimit} chunks of one uncuttable unit over maxTokens, slowest ${Math.round(slowest)} ms, heap +${Math.round(grown / 1e6)} MB`,
  )
  // What a batch allocated is garbage once it is done: a generous bound.
  t.ok(grown < 64 * 1024 * 1024, `heap grew ${grown} bytes over the batch`)
  t.ok(slowest <= BUDGET_MS)
})

t.test('the documented refusal: over maxBytes is a ConversionError naming the limit', async (t) => {
  t.throws(() => convertStorage('<p>€</p>', { maxBytes: 8 }), {
    name: 'ConversionError',
    message: 'page body is 10 bytes, over the 8-byte limit',
  })
  t.type(convertStorage('<p>€</p>', { maxBytes: 10 }).markdown, 'string')
})

// What the fuzzer found (seed 20261205), kept as plain cases: tables whose spans multiply.
const WARNING = 'a table too large to lay out as a grid kept as lines'

t.test('spans that would multiply a table past the budget keep its rows as lines', async (t) => {
  // 40 rows of 1000×1000 spans: a 2 KB table that was a grid of 1.6 million slots (7 s).
  const bomb = `<table>${'<tr><td colspan="1000" rowspan="1000">x</td></tr>'.repeat(40)}</table>`
  const result = convertStorage(bomb)
  t.same(result.warnings, [WARNING])
  t.equal(result.markdown, `${Array(40).fill('x').join('\\\n')}\n`)

  // Short rows under a wide one pad the grid: 1000 × 1000 slots for 1001 cells.
  const padded = `<table><caption>Wide</caption><tr>${'<td><p>a</p></td>'.repeat(1000)}</tr>${'<tr></tr>'.repeat(1000)}</table>`
  const flat = convertStorage(padded)
  t.same(flat.warnings, [WARNING])
  t.equal(flat.markdown, `_Wide_\n\n${Array(1000).fill('a').join(' · ')}\n`)

  // A big table of plain cells is no amplification: it stays a table.
  const plain = convertStorage(
    `<table>${`<tr>${'<td>c</td>'.repeat(20)}</tr>`.repeat(2000)}</table>`,
  )
  t.same(plain.warnings, [])
  t.match(plain.markdown, /^\| c \| c \|/)
})

t.test("the budget is the page's: tables that each fit can exhaust it together", async (t) => {
  // Each table adds 199 × 600 = 119,400 slots of copies: the first fits, the second does not.
  const spanned = `<table><tr><td colspan="600">s</td></tr>${'<tr><td>r</td></tr>'.repeat(199)}</table>`
  const one = convertStorage(spanned)
  t.same(one.warnings, [])
  const two = convertStorage(`${spanned}<p>between</p>${spanned}`)
  t.same(two.warnings, [WARNING])
  t.match(two.markdown, /^\| s \| s \|[\s\S]*\nbetween\n\ns\\\nr\\\nr\\\n/)
})

t.test(
  'a table of several hundred thousand rows converts without overflowing the stack',
  async (t) => {
    // Its rows were spread into push(): a RangeError out of convertStorage.
    const rows = `<table><tbody><caption>ignored in a body</caption>${'<tr/>'.repeat(300_000)}<tr><td>last</td></tr></tbody></table>`
    const result = convertStorage(rows)
    t.type(result.markdown, 'string')
    t.match(result.markdown, /last/)
  },
)

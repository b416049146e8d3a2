import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { convertStorage } from '../../../services/worker/src/convert/index.ts'

// The converter against the owner's own rendering of 21 real pages: querypie-docs converts its
// Confluence pages to MDX (`expected.mdx`, beside the storage body `page.xhtml`). Their MDX makes
// choices of its own (Callout components, <figure>, HTML tables, headings one level down, one
// sentence a line), so both sides are reduced to units of text before comparing: front matter,
// imports and the `# Title` line the MDX adds go; JSX/HTML wrappers go (an image keeps its alt
// text, a figure its caption); entities are decoded; list, heading and quote markers, emphasis,
// escapes, link URLs, fences, table pipes and blank lines go. A unit is a paragraph (its lines
// joined), a heading, a list item, a table cell, an image's text or a line of code, as its
// lower-cased words. Similarity is the Dice coefficient of the longest common subsequence, over
// units (structure) and over words (text). Only modest floors are asserted: the test catches a
// regression, it does not chase the MDX's choices.

const CASES = fileURLToPath(
  new URL(
    '../../../../shared/fixtures/confluence/querypie__querypie-docs/confluence-mdx/tests/testcases/',
    import.meta.url,
  ),
)
const MIN_UNIT_SIMILARITY = 0.6
const MIN_WORD_SIMILARITY = 0.8

const ENTITIES: Record<string, string> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: ' ',
}
const decode = (s: string) =>
  s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (all, name: string) => {
    if (name[0] === '#') {
      const code =
        name[1] === 'x' || name[1] === 'X'
          ? Number.parseInt(name.slice(2), 16)
          : Number(name.slice(1))
      return Number.isFinite(code) ? String.fromCodePoint(code) : all
    }
    return ENTITIES[name.toLowerCase()] ?? all
  })

const BLOCK_TAGS =
  /^(?:figure|figcaption|table|thead|tbody|tfoot|tr|td|th|p|div|details|summary|callout|colgroup|col|ul|ol|li|h[1-6]|pre|blockquote|hr)$/i

const words = (line: string) =>
  line
    .normalize('NFC')
    .toLowerCase()
    .match(/[\p{L}\p{M}\p{N}]+/gu) ?? []

const TABLE_ROW = /^[\s>]*\|/
const TABLE_SEPARATOR = /^[\s>]*\|(?:\s*:?-+:?\s*\|)+\s*$/

/**
 * Markdown or MDX → its units of text, each a string of words: a paragraph (soft-wrapped and
 * hard-broken lines joined), a heading, a list item, a table cell, an image's alt text or
 * caption, a line of code.
 */
function textUnits(markdown: string, { mdx }: { mdx: boolean }): string[] {
  let text = markdown.replace(/\r\n?/g, '\n')
  if (mdx) {
    text = text.replace(/^---\n[\s\S]*?\n---\n/, '')
    text = text.replace(/^\s*import\s.*$/gm, '')
    // The title the MDX adds as its first line.
    text = text.replace(/^\s*# .*\n/, '')
  }
  // Table rows: a cell is a unit, or more where it has line breaks; separator rows go.
  text = text
    .split('\n')
    .filter((line) => !TABLE_SEPARATOR.test(line))
    .map((line) =>
      TABLE_ROW.test(line)
        ? line
            .replace(/^[\s>]*\|/, '')
            .split(/(?<!\\)\|/)
            .map((cell) => `\n\n${cell.replace(/<br\s*\/?>/gi, '\n\n')}\n\n`)
            .join('')
        : line,
    )
    .join('\n')
  // HTML/JSX: an image is its alt text; <br> a line break; block tags end a unit, others vanish.
  text = text
    .replace(/<img\b[^>]*?\balt="([^"]*)"[^>]*>/gi, '\n\n$1\n\n')
    .replace(/<br\s*\/?>/gi, '\n')
    .replace(/<\/?([A-Za-z][\w-]*)\b[^>]*>/g, (_tag, name: string) =>
      BLOCK_TAGS.test(name) ? '\n\n' : '',
    )
  text = decode(text)
  // Markdown: an image is a unit of its alt text, a link is its text.
  text = text
    .replace(/!\[((?:\\.|[^\\\]])*)\]\((?:\\.|[^\\)])*\)/g, '\n\n$1\n\n')
    .replace(/\[((?:\\.|[^\\\]])*)\]\((?:\\.|[^\\)])*\)/g, '$1')

  const units: string[] = []
  let current: string[] = []
  let fence = false
  const end = () => {
    if (current.length > 0) units.push(current.join(' '))
    current = []
  }
  for (const raw of text.split('\n')) {
    let line = raw.trim().replace(/^(?:>\s?)+/, '')
    if (/^(`{3,}|~{3,})/.test(line)) {
      end()
      fence = !fence
      continue
    }
    if (fence) {
      units.push(line)
      continue
    }
    if (line === '') {
      end()
      continue
    }
    let marker = false
    for (let before = ''; before !== line; ) {
      before = line
      line = line.replace(/^(?:#{1,6}|[-*+]|\d+\\?[.)])\s+/, () => {
        marker = true
        return ''
      })
    }
    if (marker) end()
    // Our panels' labels stand where the MDX has a Callout type.
    if (!mdx && current.length === 0) {
      line = line.replace(/^\**(?:Info|Note|Tip|Warning|Error|Success|Alert):\**\s*/, '')
    }
    current.push(line)
  }
  end()
  return units.map((unit) => words(unit).join(' ')).filter((unit) => unit !== '')
}

/** Length of the longest common subsequence (two rows of the table, so memory stays linear). */
function lcs<T>(a: readonly T[], b: readonly T[]): number {
  let prev = new Uint32Array(b.length + 1)
  let row = new Uint32Array(b.length + 1)
  for (let i = 1; i <= a.length; i++) {
    const x = a[i - 1]
    for (let j = 1; j <= b.length; j++) {
      row[j] =
        x === b[j - 1]
          ? (prev[j - 1] as number) + 1
          : Math.max(prev[j] as number, row[j - 1] as number)
    }
    ;[prev, row] = [row, prev]
  }
  return prev[b.length] as number
}

const dice = <T>(a: readonly T[], b: readonly T[]) =>
  a.length + b.length === 0 ? 1 : (2 * lcs(a, b)) / (a.length + b.length)

const cases = existsSync(CASES)
  ? readdirSync(CASES, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .filter(
        (name) =>
          existsSync(join(CASES, name, 'page.xhtml')) &&
          existsSync(join(CASES, name, 'expected.mdx')),
      )
      .sort()
  : []

if (cases.length === 0) {
  t.skip(
    `golden pages: no querypie test cases under ${CASES} (the shared fixtures live beside the project)`,
    () => {},
  )
} else {
  const unitScores: number[] = []
  const wordScores: number[] = []
  for (const name of cases) {
    t.test(name, async (t) => {
      const storage = readFileSync(join(CASES, name, 'page.xhtml'), 'utf8')
      const expected = textUnits(readFileSync(join(CASES, name, 'expected.mdx'), 'utf8'), {
        mdx: true,
      })
      const actual = textUnits(convertStorage(storage).markdown, { mdx: false })
      const units = dice(actual, expected)
      const split = (units: string[]) => units.flatMap((unit) => unit.split(' '))
      const byWord = dice(split(actual), split(expected))
      unitScores.push(units)
      wordScores.push(byWord)
      t.comment(
        `${name}: units ${units.toFixed(3)} (${actual.length} vs ${expected.length}), ` +
          `words ${byWord.toFixed(3)}`,
      )
      t.ok(
        units >= MIN_UNIT_SIMILARITY,
        `unit similarity ${units.toFixed(3)} >= ${MIN_UNIT_SIMILARITY}`,
      )
      t.ok(
        byWord >= MIN_WORD_SIMILARITY,
        `word similarity ${byWord.toFixed(3)} >= ${MIN_WORD_SIMILARITY}`,
      )
    })
  }
  t.test('summary', async (t) => {
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
    t.comment(
      `golden pages: ${cases.length}; mean similarity to expected.mdx: units ` +
        `${mean(unitScores).toFixed(3)} (min ${Math.min(...unitScores).toFixed(3)}), words ` +
        `${mean(wordScores).toFixed(3)} (min ${Math.min(...wordScores).toFixed(3)})`,
    )
    t.pass('summary printed')
  })
}

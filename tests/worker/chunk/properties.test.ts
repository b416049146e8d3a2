import t, { type Test } from 'tap'
import {
  type Chunk,
  chunkMarkdown,
  estimateTokens,
  type PageRef,
} from '../../../services/worker/src/chunk/index.ts'

// Property checks over generated pages: nothing is lost, order is kept, every chunk fits.

const page: PageRef = {
  pageId: '77',
  title: 'Generated',
  url: 'https://acme.atlassian.net/wiki/spaces/GEN/pages/77/Generated',
  space: 'GEN',
  ancestors: ['Root'],
}

/** mulberry32: a small seeded generator, so every run checks the same pages. */
function random(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const KOREAN = [
  '설치 방법을 설명합니다',
  '저장소를 복제합니다',
  '서버를 실행합니다',
  '로그를 확인합니다',
]
const COMMON = ['the', 'service', 'config', 'deploy', 'a', 'of', 'runs', 'version']

type Generated = { markdown: string; rows: string[] }

/** A page of headings, paragraphs, lists, quotes, code blocks and tables with unique words. */
function generate(seed: number, blocks: number): Generated {
  const next = random(seed)
  const pick = <T>(items: T[]) => items[Math.floor(next() * items.length)] as T
  let n = 0
  const word = () => (next() < 0.4 ? `w${seed}x${n++}` : pick(COMMON))
  const words = (count: number) => Array.from({ length: count }, word).join(' ')
  const sentence = () =>
    next() < 0.15
      ? `${pick(KOREAN)} ${n++}.`
      : `${words(3 + Math.floor(next() * 12))}${pick(['.', '.', '!', '?'])}`
  const sentences = (count: number) => Array.from({ length: count }, sentence).join(' ')
  const out: string[] = []
  const rows: string[] = []
  for (let b = 0; b < blocks; b++) {
    const kind = next()
    if (kind < 0.2) {
      out.push(`${'#'.repeat(1 + Math.floor(next() * 4))} Heading ${words(2)}`)
    } else if (kind < 0.45) {
      out.push(sentences(1 + Math.floor(next() * (next() < 0.2 ? 40 : 5))))
    } else if (kind < 0.55) {
      const items = Array.from({ length: 2 + Math.floor(next() * 6) }, () => `- ${sentence()}`)
      out.push(items.join('\n'))
    } else if (kind < 0.65) {
      out.push(`> **Note:** ${sentences(1 + Math.floor(next() * 8))}`)
    } else if (kind < 0.82) {
      const fence = pick(['```', '````', '~~~'])
      const body = Array.from({ length: 1 + Math.floor(next() * (next() < 0.3 ? 60 : 8)) }, () =>
        pick([
          `# comment ${words(2)}`,
          `## ${words(1)}`,
          `run --flag=${word()}`,
          '',
          `  ${words(4)}`,
        ]),
      )
      rows.push(...body)
      out.push([`${fence}${pick(['bash', 'python', ''])}`, ...body, fence].join('\n'))
    } else {
      const head = ['| Name | Value | Notes |', '| --- | --- | --- |']
      const body = Array.from(
        { length: 1 + Math.floor(next() * (next() < 0.3 ? 50 : 6)) },
        () => `| ${word()} | ${Math.floor(next() * 1000)} | ${words(3)} |`,
      )
      rows.push(...body)
      // now and then a row too big for any chunk, with <br> line breaks in a cell
      const huge = Array.from({ length: 40 }, () => words(3)).join('<br>')
      out.push(
        [...head, ...body, ...(next() < 0.2 ? [`| ${word()} | 0 | ${huge} |`] : [])].join('\n'),
      )
    }
  }
  return { markdown: out.join('\n\n'), rows }
}

/** Words as rows are cut: at whitespace and after `<br>`. */
const words = (text: string) => text.split(/(?<=<br>)|\s+/).filter((word) => word !== '')

/** True when `needle` is a subsequence of `haystack`. */
function isSubsequence(needle: string[], haystack: string[]): boolean {
  let i = 0
  for (const word of haystack) {
    if (i < needle.length && word === needle[i]) i++
  }
  return i === needle.length
}

const isHeading = (line: string) => /^#{1,6} /.test(line)

function checkInvariants(t: Test, generated: Generated, chunks: Chunk[], maxTokens: number) {
  const { markdown, rows } = generated
  t.same(
    chunks.map((chunk) => chunk.position),
    chunks.map((_, i) => i),
    'positions are 0..n-1',
  )
  t.equal(new Set(chunks.map((chunk) => chunk.id)).size, chunks.length, 'ids are unique')
  const over = chunks.filter((chunk) => chunk.tokens > maxTokens)
  t.same(over, [], 'every chunk fits in maxTokens')
  t.ok(
    chunks.every((chunk) => chunk.tokens === estimateTokens(chunk.text)),
    'tokens is the estimate of the text',
  )
  t.ok(
    chunks.every((chunk) => chunk.text !== '' && chunk.text === chunk.text.trim()),
    'texts are trimmed and never empty',
  )
  t.ok(
    chunks.every(
      (chunk) =>
        chunk.breadcrumbText === ['GEN', 'Root', 'Generated', ...chunk.headingPath].join(' › ') &&
        chunk.sectionUrl.startsWith(page.url),
    ),
    'breadcrumbs and links',
  )
  // heading lines stand alone only at the end of the page, or when they and the first unit of
  // their section (a line, a row under its header) do not fit in one chunk
  const headingOnly = chunks.filter((chunk, i) => {
    const lines = chunk.text.split('\n').filter((line) => line.trim() !== '')
    const next = chunks[i + 1]
    return lines.every(isHeading) && next && chunk.tokens + 2 + next.tokens <= maxTokens
  })
  t.same(headingOnly, [], 'heading lines top the chunk after them')
  const input = words(markdown)
  const output = chunks.flatMap((chunk) => words(chunk.text))
  t.ok(isSubsequence(input, output), 'every word of the page is in the chunks, in order')
  const lines = new Set(chunks.flatMap((chunk) => chunk.text.split('\n').map((l) => l.trim())))
  const missing = rows.filter((row) => !lines.has(row.trim()))
  t.same(missing, [], 'code lines and table rows that fit are never cut')
}

t.test('generated pages keep every word in order and every chunk fits', async (t) => {
  let hugeRows = 0
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const generated = generate(seed, 60)
    hugeRows += generated.markdown.split('<br>').length - 1
    for (const [maxTokens, overlapTokens] of [
      [400, 40],
      [120, 12],
      [80, 0],
    ] as const) {
      const chunks = chunkMarkdown(generated.markdown, page, { maxTokens, overlapTokens })
      t.ok(chunks.length > 0)
      checkInvariants(t, generated, chunks, maxTokens)
    }
  }
  t.ok(hugeRows > 0, 'the pages have rows too big for a chunk')
})

t.test('a 1 MB page chunks in one pass and keeps the invariants', async (t) => {
  const parts: Generated[] = []
  let size = 0
  for (let seed = 100; size < 1_000_000; seed++) {
    const generated = generate(seed, 80)
    parts.push(generated)
    size += generated.markdown.length
  }
  const longWords = Array.from({ length: 30_000 }, (_, i) => `long${i}`).join(' ')
  const markdown = [...parts.map((part) => part.markdown), longWords].join('\n\n')
  const generated = { markdown, rows: parts.flatMap((part) => part.rows) }
  t.ok(markdown.length > 1_000_000)
  const chunks = chunkMarkdown(markdown, page)
  t.ok(chunks.length > 1000)
  checkInvariants(t, generated, chunks, 400)
})

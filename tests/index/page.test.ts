import {
  joinChunks,
  MIN_OVERLAP_CHARS,
  openPageReader,
  overlapLength,
  pageIdInUrl,
  withoutAnchor,
} from '@confluence-bot/index'
import t from 'tap'
import { type RowSpec, tempUri, writeTable } from './search-helpers.ts'

// Reading one page back from a real LanceDB chunk table: its chunks in page order, by id or by
// URL, only within the allowed spaces.

const BASE = 'https://wiki.example/wiki/spaces/ENG/pages'

/** Chunk `pos` of page `id` (source s1, space ENG), in section `anchor` when given. */
const chunk = (id: string, pos: number, text: string, extra: Partial<RowSpec> = {}): RowSpec => ({
  page_id: id,
  chunk_pos: pos,
  text,
  title: `Page ${id}`,
  url: `${BASE}/${id}/Page-${id}`,
  breadcrumb: `Engineering › Page ${id}`,
  ...extra,
})

const SENTENCE = 'Roll back with helm rollback and the previous revision.'

const ROWS: RowSpec[] = [
  // Written out of order: the reader orders by chunk_pos, not by storage.
  chunk('101', 2, '## Rollback\n\nRun `helm rollback billing`.', {
    url: `${BASE}/101/Page-101#Rollback`,
    heading_path: 'Rollback',
    breadcrumb: 'Engineering › Page 101 › Rollback',
  }),
  chunk('101', 0, '# Deploy\n\nDeploy with helm.', {
    url: `${BASE}/101/Page-101#Deploy`,
    heading_path: 'Deploy',
    breadcrumb: 'Engineering › Page 101 › Deploy',
    labels: ['runbook'],
    version: '7',
  }),
  chunk('101', 1, `Deploy after the pipeline is green. ${SENTENCE}`, {
    url: `${BASE}/101/Page-101#Deploy`,
    heading_path: 'Deploy',
    breadcrumb: 'Engineering › Page 101 › Deploy',
  }),
  chunk('101', 3, `${SENTENCE} Then check the dashboards.`, {
    url: `${BASE}/101/Page-101#Rollback`,
    heading_path: 'Rollback',
    breadcrumb: 'Engineering › Page 101 › Rollback',
  }),
  chunk('201', 0, 'Paging goes through Opsgenie.', { space: 'OPS', url: `${BASE}/201/On-call` }),
  // One page id in two sources: the later version is read.
  chunk('301', 0, 'Old copy.', { source_id: 's0', updated_at: '2023-01-01T00:00:00.000Z' }),
  chunk('301', 0, 'New copy.', { source_id: 's2', updated_at: '2024-01-01T00:00:00.000Z' }),
  // Same version in two sources: the first source id, every time.
  chunk('302', 0, 'From s3.', { source_id: 's3' }),
  chunk('302', 0, 'From s1.', { source_id: 's1' }),
  // An export's page, without a URL.
  chunk('401', 0, 'Exported.', { url: '' }),
  // Another Confluence with the same page id.
  chunk('501', 0, 'Elsewhere.', { url: 'https://other.example/wiki/spaces/X/pages/501/Y' }),
  // A page with many chunks: every one is read (no default limit).
  ...Array.from({ length: 25 }, (_, i) => chunk('601', i, `Part ${i}.`)),
]

t.test('a page is read by id with its chunks in page order', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, ROWS, null, undefined, false)
  const reader = await openPageReader({ uri })
  t.teardown(() => reader.close())

  const page = await reader.read({ page_id: '101' })
  t.same(page, {
    page_id: '101',
    source_id: 's1',
    space: 'ENG',
    title: 'Page 101',
    url: `${BASE}/101/Page-101`,
    breadcrumb: 'Engineering › Page 101',
    updated_at: '2024-05-01T10:00:00.000Z',
    version: '7',
    labels: ['runbook'],
    markdown: [
      '# Deploy\n\nDeploy with helm.',
      `Deploy after the pipeline is green. ${SENTENCE}`,
      '## Rollback\n\nRun `helm rollback billing`.',
      // Another section: the repeated sentence is not the chunker's overlap and stays.
      `${SENTENCE} Then check the dashboards.`,
    ].join('\n\n'),
    chunks: 4,
  })

  const many = await reader.read({ page_id: '601' })
  t.equal(many?.chunks, 25, 'every chunk of a long page')
  t.match(many?.markdown, /^Part 0\.\n\nPart 1\.[\s\S]*Part 24\.$/)

  t.equal((await reader.read({ page_id: '301' }))?.markdown, 'New copy.', 'the latest version')
  t.equal((await reader.read({ page_id: '302' }))?.markdown, 'From s1.', 'then the first source')
  t.equal(await reader.read({ page_id: '999' }), null, 'an unknown page')
  t.equal(await reader.read({ page_id: "101' OR '1'='1" }), null, 'an id is a literal')
  t.equal(await reader.read({}), null, 'neither id nor URL')
})

t.test('a page is read by its URL, a section URL, or the page id a URL names', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, ROWS, null, undefined, false)
  const reader = await openPageReader({ uri })
  t.teardown(() => reader.close())

  const id = async (url: string) => (await reader.read({ url }))?.page_id
  t.equal(await id(`${BASE}/101/Page-101`), '101', 'the page URL')
  t.equal(await id(`${BASE}/101/Page-101#Rollback`), '101', 'a section URL')
  t.equal(await id(`  ${BASE}/201/On-call  `), '201', 'spaces around it')
  t.equal(await id(`${BASE}/101/Renamed-Title`), '101', 'an old title: the page id it names')
  t.equal(
    await id('https://wiki.example/confluence/pages/viewpage.action?pageId=101'),
    '101',
    "Data Center's viewpage form",
  )
  t.equal(
    await id('https://wiki.example/wiki/spaces/ENG/pages/501/Y'),
    undefined,
    'same id, other host',
  )
  t.equal(
    await id('https://wiki.example/wiki/spaces/ENG/pages/401/X'),
    undefined,
    'a page without URL',
  )
  t.equal(await id('https://wiki.example/wiki/display/ENG/Nothing'), undefined, 'no page id in it')
  t.equal(await id('not a url'), undefined, 'not a URL')
  t.equal(await id(''), undefined, 'an empty URL names no page (not the pages without one)')
  t.equal(await id('#anchor'), undefined, 'an anchor alone')
})

t.test('a page outside the allowed spaces is not found', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, ROWS, null, undefined, false)
  const reader = await openPageReader({ uri, cacheMb: 16 })
  t.teardown(() => reader.close())

  t.equal((await reader.read({ page_id: '201', spaces: ['OPS'] }))?.space, 'OPS')
  t.equal(await reader.read({ page_id: '201', spaces: ['ENG'] }), null, 'by id')
  t.equal(await reader.read({ url: `${BASE}/201/On-call`, spaces: ['ENG'] }), null, 'by URL')
  t.equal(await reader.read({ page_id: '201', spaces: [] }), null, 'no space at all')
  t.equal((await reader.read({ page_id: '101', spaces: ['ENG', 'OPS'] }))?.page_id, '101')
})

t.test('an index without a chunk table holds no page', async (t) => {
  const reader = await openPageReader({ uri: tempUri(t) })
  t.teardown(() => reader.close())
  t.equal(await reader.read({ page_id: '101' }), null)
  t.equal(await reader.read({ url: `${BASE}/101/Page-101` }), null)
})

t.test('a table recreated between two reads is read as it is now', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, ROWS, null, undefined, false)
  const reader = await openPageReader({ uri })
  t.teardown(() => reader.close())
  t.equal((await reader.read({ page_id: '101' }))?.chunks, 4)
  await writeTable(uri, [chunk('101', 0, 'Rewritten.')], null, undefined, false)
  t.equal((await reader.read({ page_id: '101' }))?.markdown, 'Rewritten.')
})

t.test('the overlap the chunker repeats at a seam is given once', async (t) => {
  const section = 'https://w/p#s'
  const tail = 'The rotation changes every Monday at ten.'
  t.equal(
    joinChunks([
      { text: `Intro line.\n\nFirst sentence here. ${tail}`, section },
      { text: `${tail}\n\nNext paragraph.`, section },
    ]),
    `Intro line.\n\nFirst sentence here. ${tail}\n\nNext paragraph.`,
    'a whole-line overlap',
  )
  t.equal(
    joinChunks([
      { text: `A long line that was cut: ${tail}`, section },
      { text: `${tail} and it goes on after the cut.`, section },
    ]),
    `A long line that was cut: ${tail} and it goes on after the cut.`,
    'an overlap that continues a cut line',
  )
  t.equal(
    joinChunks([
      { text: tail, section },
      { text: `${tail}\nMore.`, section },
    ]),
    `${tail}\nMore.`,
    'a previous chunk that is all overlap',
  )
  t.equal(
    joinChunks([
      { text: 'Short one.', section },
      { text: 'Short one.\nMore.', section },
    ]),
    'Short one.\n\nShort one.\nMore.',
    `an overlap under ${MIN_OVERLAP_CHARS} characters is left in (it may not be one)`,
  )
  t.equal(
    joinChunks([
      { text: '```sh\nhelm rollback billing and the previous revision\n```', section },
      { text: '```sh\nhelm rollback billing and the previous revision\n```', section },
    ]).split('```sh').length,
    3,
    'a re-fenced code block is never merged',
  )
  t.equal(
    joinChunks([
      { text: `Xx${tail}`, section },
      { text: `${tail}\nMore.`, section },
    ]),
    `Xx${tail}\n\n${tail}\nMore.`,
    'a match that starts inside a word is no overlap',
  )
  t.equal(joinChunks([]), '')
})

t.test('overlapLength and the URL helpers', async (t) => {
  t.equal(overlapLength('one two three four five six seven', 'four five six seven eight'), 0)
  t.equal(
    overlapLength('aaa three four five six seven eight', 'three four five six seven eight'),
    31,
  )
  t.equal(overlapLength('x', '| a | b |'), 0, 'a table row')
  t.equal(overlapLength('x', '# Heading that is long enough here'), 0, 'a heading')
  t.equal(withoutAnchor('https://w/p#a#b'), 'https://w/p')
  t.same(pageIdInUrl('https://w.example/wiki/spaces/E/pages/42'), {
    origin: 'https://w.example',
    pageId: '42',
  })
  t.same(pageIdInUrl('https://w.example/x?pageId=7'), { origin: 'https://w.example', pageId: '7' })
  t.equal(pageIdInUrl('https://w.example/x?pageId=abc'), undefined)
  t.equal(pageIdInUrl('https://w.example/pages/12abc/x'), undefined)
  t.equal(pageIdInUrl('nope'), undefined)
})

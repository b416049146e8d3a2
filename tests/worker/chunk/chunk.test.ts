import t from 'tap'
import {
  type Chunk,
  chunkId,
  chunkMarkdown,
  estimateTokens,
  type PageRef,
} from '../../../services/worker/src/chunk/index.ts'

const PAGE_URL = 'https://acme.atlassian.net/wiki/spaces/ENG/pages/123/My+Page'
const page: PageRef = {
  pageId: '123',
  title: 'My Page',
  url: PAGE_URL,
  space: 'ENG',
  ancestors: ['Guides'],
}
const md = (...lines: string[]) => lines.join('\n')
const texts = (chunks: Chunk[]) => chunks.map((chunk) => chunk.text)
const places = (chunks: Chunk[]) =>
  chunks.map((chunk) => ({ path: chunk.headingPath, url: chunk.sectionUrl.slice(PAGE_URL.length) }))

t.test('empty or blank markdown gives no chunks', async (t) => {
  t.same(chunkMarkdown('', page), [])
  t.same(chunkMarkdown('  \n\n\t\n  ', page), [])
})

t.test('headings split the page; each chunk knows its path, breadcrumb and link', async (t) => {
  const markdown = md(
    'Intro before any heading.',
    '',
    '# Getting started',
    '',
    'Install it first.',
    '',
    '## API & SDKs',
    '',
    'Call the API.',
    '',
    '# **Bold** [link](x)',
    '',
    'Read this.',
  )
  const chunks = chunkMarkdown(markdown, page, { maxTokens: 40 })
  t.same(chunks, [
    {
      id: '123-c0',
      pageId: '123',
      position: 0,
      headingPath: [],
      breadcrumb: ['ENG', 'Guides', 'My Page'],
      breadcrumbText: 'ENG › Guides › My Page',
      sectionUrl: PAGE_URL,
      text: 'Intro before any heading.',
      tokens: 9,
    },
    {
      id: '123-c1',
      pageId: '123',
      position: 1,
      headingPath: ['Getting started'],
      breadcrumb: ['ENG', 'Guides', 'My Page', 'Getting started'],
      breadcrumbText: 'ENG › Guides › My Page › Getting started',
      sectionUrl: `${PAGE_URL}#Getting-started`,
      text: '# Getting started\n\nInstall it first.',
      tokens: 16,
    },
    {
      id: '123-c2',
      pageId: '123',
      position: 2,
      headingPath: ['Getting started', 'API & SDKs'],
      breadcrumb: ['ENG', 'Guides', 'My Page', 'Getting started', 'API & SDKs'],
      breadcrumbText: 'ENG › Guides › My Page › Getting started › API & SDKs',
      sectionUrl: `${PAGE_URL}#API-%26-SDKs`,
      text: '## API & SDKs\n\nCall the API.',
      tokens: 13,
    },
    {
      id: '123-c3',
      pageId: '123',
      position: 3,
      headingPath: ['Bold link'],
      breadcrumb: ['ENG', 'Guides', 'My Page', 'Bold link'],
      breadcrumbText: 'ENG › Guides › My Page › Bold link',
      sectionUrl: `${PAGE_URL}#Bold-link`,
      text: '# **Bold** [link](x)\n\nRead this.',
      tokens: 21,
    },
  ])

  const server = chunkMarkdown(markdown, page, { maxTokens: 40, anchorStyle: 'server' })
  t.same(
    server.map((chunk) => chunk.sectionUrl),
    [
      PAGE_URL,
      `${PAGE_URL}#MyPage-Gettingstarted`,
      `${PAGE_URL}#MyPage-API%26SDKs`,
      `${PAGE_URL}#MyPage-Boldlink`,
    ],
  )
  t.same(texts(server), texts(chunks), 'the anchor style changes only the links')
})

t.test('a first heading that repeats the page title is not part of the heading path', async (t) => {
  const chunks = chunkMarkdown(md('# My Page', '', 'Welcome.', '', '## Usage', '', 'Use it.'), page)
  t.same(texts(chunks), ['# My Page\n\nWelcome.\n\n## Usage\n\nUse it.'])
  t.same(places(chunks), [{ path: [], url: '' }])
  t.same(chunks[0]?.breadcrumb, ['ENG', 'Guides', 'My Page'])

  const other = chunkMarkdown(md('# Other', '', 'Welcome.'), page)
  t.same(places(other), [{ path: ['Other'], url: '#Other' }])
})

t.test('the page URL loses any fragment it had before the anchor is added', async (t) => {
  const chunks = chunkMarkdown('## Usage\n\nUse it.', { ...page, url: `${PAGE_URL}#top` })
  t.equal(chunks[0]?.sectionUrl, `${PAGE_URL}#Usage`)
})

const FOUR_PARAGRAPHS = md(
  '## Steps',
  '',
  'Alpha one two. Alpha three four.',
  '',
  'Bravo one two. Bravo three four.',
  '',
  'Charlie one two. Charlie three four.',
  '',
  'Delta one two. Delta three four.',
  '',
  '## Next',
  '',
  'Echo one two. Echo three four.',
  '',
  'Foxtrot one two. Foxtrot three four.',
)

t.test('blocks are packed greedily up to maxTokens', async (t) => {
  // heading 4, Alpha/Bravo/Delta/Echo 12, Charlie 14, Foxtrot 14; a blank line costs 2
  const chunks = chunkMarkdown(FOUR_PARAGRAPHS, page, { maxTokens: 30, overlapTokens: 0 })
  t.same(texts(chunks), [
    '## Steps\n\nAlpha one two. Alpha three four.',
    'Bravo one two. Bravo three four.\n\nCharlie one two. Charlie three four.',
    'Delta one two. Delta three four.',
    '## Next\n\nEcho one two. Echo three four.',
    'Foxtrot one two. Foxtrot three four.',
  ])
  t.same(
    chunks.map((chunk) => chunk.tokens),
    [18, 28, 12, 18, 14],
  )
  t.same(places(chunks), [
    { path: ['Steps'], url: '#Steps' },
    { path: ['Steps'], url: '#Steps' },
    { path: ['Steps'], url: '#Steps' },
    { path: ['Next'], url: '#Next' },
    { path: ['Next'], url: '#Next' },
  ])
})

t.test('chunks of one section overlap by whole sentences; none across a heading', async (t) => {
  const chunks = chunkMarkdown(FOUR_PARAGRAPHS, page, { maxTokens: 30, overlapTokens: 8 })
  t.same(texts(chunks), [
    '## Steps\n\nAlpha one two. Alpha three four.',
    'Alpha three four.\n\nBravo one two. Bravo three four.',
    'Bravo three four.\n\nCharlie one two. Charlie three four.',
    'Charlie three four.\n\nDelta one two. Delta three four.',
    '## Next\n\nEcho one two. Echo three four.',
    'Echo three four.\n\nFoxtrot one two. Foxtrot three four.',
  ])
  t.ok(chunks.every((chunk) => chunk.tokens <= 30))
})

t.test('the overlap falls back to the last words when a sentence is too long', async (t) => {
  const chunks = chunkMarkdown(FOUR_PARAGRAPHS, page, { maxTokens: 30, overlapTokens: 6 })
  t.same(texts(chunks).slice(0, 2), [
    '## Steps\n\nAlpha one two. Alpha three four.',
    'three four.\n\nBravo one two. Bravo three four.',
  ])
})

t.test('a code block that fits in a chunk is never cut', async (t) => {
  const markdown = md(
    '## Build',
    '',
    'Run the build first.',
    '',
    '```bash',
    'make build',
    'make test',
    '```',
    '',
    'Then ship it.',
  )
  // heading 4 + 2 + paragraph 7 = 13; the code block is 19 and does not fit behind them in 30
  t.same(texts(chunkMarkdown(markdown, page, { maxTokens: 30, overlapTokens: 0 })), [
    '## Build\n\nRun the build first.',
    '```bash\nmake build\nmake test\n```\n\nThen ship it.',
  ])
  // the overlap is text only: none is taken from a code block
  t.same(texts(chunkMarkdown(markdown, page, { maxTokens: 30, overlapTokens: 8 })), [
    '## Build\n\nRun the build first.',
    'Run the build first.\n\n```bash\nmake build\nmake test\n```',
    'Then ship it.',
  ])
})

t.test('a code block bigger than maxTokens is cut at lines and re-fenced', async (t) => {
  const markdown = md(
    '## Script',
    '',
    '````python',
    '# step one',
    'x = 1',
    '# step two',
    'y = 2',
    '# step three',
    'z = x + y',
    'print(z)',
    '````',
  )
  const chunks = chunkMarkdown(markdown, page, { maxTokens: 30 })
  t.same(texts(chunks), [
    '## Script\n\n````python\n# step one\nx = 1\n````',
    '````python\n# step two\ny = 2\n# step three\n````',
    '````python\nz = x + y\nprint(z)\n````',
  ])
  t.same(places(chunks), [
    { path: ['Script'], url: '#Script' },
    { path: ['Script'], url: '#Script' },
    { path: ['Script'], url: '#Script' },
  ])
  t.ok(chunks.every((chunk) => chunk.tokens <= 30))

  const after = chunkMarkdown(
    md('## Script', '', 'Some words first.', '', ...markdown.split('\n').slice(2)),
    page,
    {
      maxTokens: 30,
    },
  )
  t.equal(after[0]?.text, '## Script\n\nSome words first.', 'a cut code block starts a chunk')
  t.equal(after[1]?.text.startsWith('````python\n# step one'), true)
})

t.test('lines inside fences are code, not headings', async (t) => {
  const markdown = md(
    '## Deploy',
    '',
    '1. Open a shell:',
    '',
    '    ```bash',
    '    # Not a heading',
    '    ## Nor this',
    '    deploy --now',
    '    ```',
    '',
    '~~~',
    '# also code',
    '```',
    '~~~',
    '',
    '## After',
    '```inline``` is not a fence',
    '# so this is a heading',
  )
  const chunks = chunkMarkdown(markdown, page, { maxTokens: 80 })
  t.same(texts(chunks), [
    md(
      '## Deploy',
      '',
      '1. Open a shell:',
      '',
      '```bash',
      '# Not a heading',
      '## Nor this',
      'deploy --now',
      '```',
      '',
      '~~~',
      '# also code',
      '```',
      '~~~',
    ),
    '## After\n\n```inline``` is not a fence\n\n# so this is a heading',
  ])
  t.same(places(chunks), [
    { path: ['Deploy'], url: '#Deploy' },
    { path: [], url: '#After' },
  ])
})

t.test('empty ATX headings and #tags are text; closing hashes are not heading text', async (t) => {
  const chunks = chunkMarkdown(md('## Usage ##', '', '#', '', '## #', '', '#tag text'), page)
  t.same(texts(chunks), ['## Usage ##\n\n#\n\n## #\n\n#tag text'])
  t.same(places(chunks), [{ path: ['Usage'], url: '#Usage' }])
})

t.test('an unclosed fence runs to the end of the page and gets closed', async (t) => {
  const chunks = chunkMarkdown(md('Intro.', '', '```js', 'let a = 1', '# not a heading'), page)
  t.same(texts(chunks), ['Intro.\n\n```js\nlet a = 1\n# not a heading\n```'])
})

const TABLE = md('| Size | CPU |', '| --- | --- |', '| S | 1 |', '| M | 2 |')

t.test('a table that fits in a chunk is never cut', async (t) => {
  // heading 4 + 2 + paragraph 6 = 12; the table is 28
  const chunks = chunkMarkdown(md('## Sizes', '', 'Pick a size.', '', TABLE), page, {
    maxTokens: 30,
    overlapTokens: 0,
  })
  t.same(texts(chunks), ['## Sizes\n\nPick a size.', TABLE])
})

t.test('a table bigger than maxTokens is cut between rows, repeating its header', async (t) => {
  const chunks = chunkMarkdown(md('## Sizes', '', TABLE, '| L | 4 |', '| XL | 8 |'), page, {
    maxTokens: 30,
  })
  t.same(texts(chunks), [
    '## Sizes\n\n| Size | CPU |\n| --- | --- |\n| S | 1 |',
    '| Size | CPU |\n| --- | --- |\n| M | 2 |\n| L | 4 |',
    '| Size | CPU |\n| --- | --- |\n| XL | 8 |',
  ])
  t.ok(chunks.every((chunk) => chunk.tokens <= 30))
})

t.test(
  'heading lines stand alone only when they and the first row cannot share a chunk',
  async (t) => {
    // heading 10 + 2 + header 17 + row 5 = 34 > 30
    const chunks = chunkMarkdown(md('## Machine sizes and CPUs', '', TABLE), page, {
      maxTokens: 30,
    })
    t.same(texts(chunks), [
      '## Machine sizes and CPUs',
      '| Size | CPU |\n| --- | --- |\n| S | 1 |\n| M | 2 |',
    ])
  },
)

t.test('a row too big for a chunk is cut after <br> or at spaces, under the header', async (t) => {
  // header and rule 16 + 1; the XL row is 26 tokens, more than the 23 left under the header
  const row = '| XL | one<br>two<br>three four  five six seven eight nine |'
  const markdown = md('| Size | CPU |', '| --- | --- |', '| S | 1 |', row)
  const chunks = chunkMarkdown(markdown, page, { maxTokens: 40 })
  t.same(texts(chunks), [
    '| Size | CPU |\n| --- | --- |\n| S | 1 |',
    '| Size | CPU |\n| --- | --- |\n| XL | one<br>two<br>three four  five six seven eight',
    '| Size | CPU |\n| --- | --- |\nnine |',
  ])
  t.ok(chunks.every((chunk) => chunk.tokens <= 40))
  // under a header that takes more than half of maxTokens, rows are not cut
  t.same(
    texts(chunkMarkdown(markdown, page, { maxTokens: 30 })).at(-1),
    `| Size | CPU |\n| --- | --- |\n${row}`,
  )
})

t.test('a table whose header alone is too big is one chunk over the limit', async (t) => {
  const table = md('| Alpha | Bravo | Charlie |', '| --- | --- | --- |')
  const chunks = chunkMarkdown(md('Intro.', '', table), page, { maxTokens: 10, overlapTokens: 0 })
  t.same(texts(chunks), ['Intro.', table])
  t.equal(chunks[1]?.tokens, 25)
})

const STORY = md(
  '## Story',
  '',
  [
    'Alpha bravo charlie. Delta echo foxtrot. Golf hotel india!',
    'Juliet kilo lima? Mike november oscar. Papa quebec romeo.',
  ].join(' '),
)

t.test('a paragraph bigger than maxTokens is cut at sentence ends', async (t) => {
  t.same(texts(chunkMarkdown(STORY, page, { maxTokens: 25, overlapTokens: 0 })), [
    '## Story\n\nAlpha bravo charlie. Delta echo foxtrot.',
    'Golf hotel india! Juliet kilo lima? Mike november oscar.',
    'Papa quebec romeo.',
  ])
  t.same(texts(chunkMarkdown(STORY.slice(10), page, { maxTokens: 25, overlapTokens: 0 })), [
    'Alpha bravo charlie. Delta echo foxtrot. Golf hotel india!',
    'Juliet kilo lima? Mike november oscar. Papa quebec romeo.',
  ])
  t.same(texts(chunkMarkdown(STORY, page, { maxTokens: 25, overlapTokens: 8 })), [
    '## Story\n\nAlpha bravo charlie. Delta echo foxtrot.',
    'Delta echo foxtrot. Golf hotel india! Juliet kilo lima?',
    'Juliet kilo lima? Mike november oscar. Papa quebec romeo.',
  ])
})

t.test(
  'a sentence bigger than maxTokens is cut at words; one huge word stands alone',
  async (t) => {
    const words = 'one two three four five six seven eight nine ten eleven twelve'
    t.same(texts(chunkMarkdown(`Intro.\n\n${words}`, page, { maxTokens: 10, overlapTokens: 0 })), [
      'Intro.\n\none two three',
      'four five six seven eight',
      'nine ten eleven twelve',
    ])
    const huge = 'x'.repeat(90)
    const chunks = chunkMarkdown(md('## Data', '', `Before ${huge} after.`), page, {
      maxTokens: 12,
      overlapTokens: 0,
    })
    t.same(texts(chunks), ['## Data\n\nBefore', huge, 'after.'])
    t.equal(chunks[1]?.tokens, 30)
  },
)

t.test('an unsplittable unit right below a heading stays with it', async (t) => {
  const huge = 'x'.repeat(90)
  t.same(texts(chunkMarkdown(md('## Data', '', huge), page, { maxTokens: 12 })), [
    `## Data\n\n${huge}`,
  ])
  const line = `print("${huge}")`
  t.same(texts(chunkMarkdown(md('## Data', '', '```py', line, '```'), page, { maxTokens: 12 })), [
    `## Data\n\n\`\`\`py\n${line}\n\`\`\``,
  ])
})

t.test('a cut line of a block quote keeps its quote marker', async (t) => {
  // 17 + 9 + 7 tokens: the line is cut into its three sentences
  const quote = '> **Note:** Back up the data first. Then stop the service. Then upgrade it.'
  const markdown = md('Intro.', '', quote)
  t.same(texts(chunkMarkdown(markdown, page, { maxTokens: 20, overlapTokens: 0 })), [
    'Intro.',
    '> **Note:** Back up the data first.',
    '> Then stop the service. Then upgrade it.',
  ])
  t.same(texts(chunkMarkdown(markdown, page, { maxTokens: 20, overlapTokens: 10 })), [
    'Intro.',
    '> **Note:** Back up the data first.',
    '> Back up the data first. Then stop the service.',
    '> Then stop the service. Then upgrade it.',
  ])
})

t.test('Korean pages: headings, anchors and sentence cuts', async (t) => {
  const korean: PageRef = { ...page, title: '개발 환경' }
  const markdown = md(
    '# 설치 가이드',
    '',
    '이 문서는 설치 방법을 설명합니다. 먼저 저장소를 복제합니다. 그 다음 의존성을 설치합니다.',
    '',
    '## 문제 해결',
    '',
    '서버가 시작되지 않으면 로그를 확인합니다.',
  )
  const chunks = chunkMarkdown(markdown, korean, { maxTokens: 80, overlapTokens: 0 })
  t.same(texts(chunks), [
    '# 설치 가이드\n\n이 문서는 설치 방법을 설명합니다. 먼저 저장소를 복제합니다.',
    '그 다음 의존성을 설치합니다.',
    '## 문제 해결\n\n서버가 시작되지 않으면 로그를 확인합니다.',
  ])
  t.same(places(chunks), [
    { path: ['설치 가이드'], url: '#%EC%84%A4%EC%B9%98-%EA%B0%80%EC%9D%B4%EB%93%9C' },
    { path: ['설치 가이드'], url: '#%EC%84%A4%EC%B9%98-%EA%B0%80%EC%9D%B4%EB%93%9C' },
    { path: ['설치 가이드', '문제 해결'], url: '#%EB%AC%B8%EC%A0%9C-%ED%95%B4%EA%B2%B0' },
  ])
  t.equal(chunks[2]?.breadcrumbText, 'ENG › Guides › 개발 환경 › 설치 가이드 › 문제 해결')
  const server = chunkMarkdown(markdown, korean, { maxTokens: 80, anchorStyle: 'server' })
  t.equal(
    server[0]?.sectionUrl,
    `${PAGE_URL}#%EA%B0%9C%EB%B0%9C%ED%99%98%EA%B2%BD-%EC%84%A4%EC%B9%98%EA%B0%80%EC%9D%B4%EB%93%9C`,
  )
  t.ok(chunks.every((chunk) => chunk.tokens <= 80))
})

t.test('a heading-only section tops the next chunk instead of being one', async (t) => {
  const paragraph = 'Words about Linux. '.repeat(6).trim()
  const chunks = chunkMarkdown(md('## Install', '', '### Linux', '', paragraph), page, {
    maxTokens: 40,
    overlapTokens: 0,
  })
  t.same(texts(chunks), [
    '## Install\n\n### Linux\n\nWords about Linux. Words about Linux. Words about Linux.',
    'Words about Linux. Words about Linux. Words about Linux.',
  ])
  t.same(places(chunks), [
    { path: ['Install'], url: '#Install' },
    { path: ['Install', 'Linux'], url: '#Linux' },
  ])
})

t.test('small sections under one parent are merged up to maxTokens', async (t) => {
  const markdown = md(
    '## Limits',
    '',
    'These limits apply to every workspace, whatever its plan or its region is.',
    '',
    '### CPU',
    '',
    'Two cores.',
    '',
    '### RAM',
    '',
    'Four gigs.',
    '',
    '## Other',
    '',
    'Short.',
    '',
    '## See also',
  )
  // maxTokens / 4 = 20: CPU (11) and RAM (11) are small; Limits (32) is not; Other (9) is small
  // but is not under Limits; the empty "See also" at the end joins the section before it
  const chunks = chunkMarkdown(markdown, page, { maxTokens: 80 })
  t.same(texts(chunks), [
    '## Limits\n\nThese limits apply to every workspace, whatever its plan or its region is.',
    '### CPU\n\nTwo cores.\n\n### RAM\n\nFour gigs.',
    '## Other\n\nShort.\n\n## See also',
  ])
  t.same(places(chunks), [
    { path: ['Limits'], url: '#Limits' },
    { path: ['Limits'], url: '#CPU' },
    { path: [], url: '#Other' },
  ])

  const nested = md(
    '# Guide',
    '',
    '## Install',
    '',
    '### Linux',
    '',
    'Run apt.',
    '',
    '### macOS',
    '',
    'Run brew.',
  )
  const merged = chunkMarkdown(nested, page)
  t.same(texts(merged), [nested])
  t.same(places(merged), [{ path: ['Guide'], url: '#Guide' }])
})

t.test('a page of headings only is one chunk', async (t) => {
  const chunks = chunkMarkdown(md('# A', '', '## B'), page)
  t.same(texts(chunks), ['# A\n\n## B'])
  t.same(places(chunks), [{ path: ['A'], url: '#A' }])
})

t.test('same input, same chunks; ids are unique, never digits only, never with ":"', async (t) => {
  const markdown = [FOUR_PARAGRAPHS, STORY, TABLE].join('\n\n')
  const first = chunkMarkdown(markdown, { ...page, pageId: 'space:42' }, { maxTokens: 30 })
  const second = chunkMarkdown(markdown, { ...page, pageId: 'space:42' }, { maxTokens: 30 })
  t.same(first, second)
  t.same(
    first.map((chunk) => chunk.id),
    first.map((_, i) => `space-42-c${i}`),
  )
  t.same(
    first.map((chunk) => chunk.position),
    first.map((_, i) => i),
  )
  t.equal(new Set(first.map((chunk) => chunk.id)).size, first.length)
  t.equal(chunkId('123', 0), '123-c0')
  t.match(chunkId('123', 7), /\D/)
  t.notMatch(chunkId('a:b', 1), /:/)
  t.ok(first.every((chunk) => chunk.tokens === estimateTokens(chunk.text)))
})

t.test('Windows line ends are read like Unix ones', async (t) => {
  const unix = chunkMarkdown(FOUR_PARAGRAPHS, page, { maxTokens: 30 })
  t.same(chunkMarkdown(FOUR_PARAGRAPHS.replaceAll('\n', '\r\n'), page, { maxTokens: 30 }), unix)
})

t.test('options are checked', async (t) => {
  t.throws(() => chunkMarkdown('x', page, { maxTokens: 0 }), RangeError)
  t.throws(() => chunkMarkdown('x', page, { maxTokens: 1.5 }), RangeError)
  t.throws(() => chunkMarkdown('x', page, { maxTokens: 40, overlapTokens: 40 }), RangeError)
  t.throws(() => chunkMarkdown('x', page, { overlapTokens: -1 }), RangeError)
  t.throws(
    () => chunkMarkdown('x', page, { anchorStyle: 'wiki' as 'cloud' }),
    /anchorStyle must be 'cloud' or 'server'/,
  )
  t.same(texts(chunkMarkdown('x', page, { maxTokens: undefined })), ['x'])
})

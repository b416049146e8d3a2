import { plainText, SNIPPET_CHARS, snippet } from '@confluence-bot/index'
import t from 'tap'

// Snippets: plain text, about SNIPPET_CHARS long, around the first place the query's terms occur,
// cut on word boundaries, in English and in languages written without spaces between words.

const filler = (n: number) => Array.from({ length: n }, (_, i) => `word${i}`).join(' ')

t.test('markdown becomes the text a reader sees', async (t) => {
  t.equal(
    plainText(
      [
        '## Install **the** agent',
        '',
        '> Note: see [the guide](https://x.example/guide) and ![logo](a.png)',
        '',
        '- [x] done item',
        '1. first `step`',
        '',
        '| a | b |',
        '| --- | :---: |',
        '| c | d |',
        '',
        '```bash',
        'echo hi',
        '```',
        '~~old~~ _kept_ __bold__',
      ].join('\n'),
    ),
    'Install the agent Note: see the guide and logo done item first step a b c d echo hi old _kept_ bold',
  )
})

t.test('a short text is the whole snippet', async (t) => {
  t.equal(snippet('# Title\n\nShort body.', 'anything'), 'Title Short body.')
})

t.test('an English snippet around the first term, on word boundaries', async (t) => {
  const text = `${filler(60)} the rollback procedure is simple ${filler(60)}`
  const s = snippet(text, 'How do I ROLLBACK?')
  t.ok(s.includes('rollback procedure'), s)
  t.ok(s.startsWith('…') && s.endsWith('…'))
  const body = s.slice(1, -1)
  t.ok(body.length <= SNIPPET_CHARS)
  t.ok(body.length > SNIPPET_CHARS - 20)
  for (const word of body.split(' ')) t.match(word, /^(word\d+|the|rollback|procedure|is|simple)$/)
})

t.test('no term found: the start of the text', async (t) => {
  const s = snippet(filler(100), 'zebra')
  t.ok(s.startsWith('word0 word1'))
  t.ok(s.endsWith('…'))
})

t.test('a term near the end: the snippet ends with the text', async (t) => {
  const s = snippet(`${filler(100)} finale`, 'finale')
  t.ok(s.endsWith('finale'), s)
  t.ok(s.startsWith('…'))
})

t.test('Korean: a query word with its particle finds the word in the text', async (t) => {
  const before = '관리자 페이지의 여러 메뉴에 대한 일반적인 설명입니다. '.repeat(8)
  const after = ' 이후 단계에서는 사용자 계정과 권한을 확인합니다.'.repeat(8)
  const text = `${before}에이전트 설치는 다음 순서로 진행합니다.${after}`
  const s = snippet(text, '에이전트를 설치하려면?')
  t.ok(s.includes('에이전트 설치는'), s)
  const body = s.replace(/^…|…$/g, '')
  t.ok(body.length <= SNIPPET_CHARS)
  // Cut between words: the snippet starts and ends on a whole word of the text.
  const words = new Set(text.split(/\s+/))
  t.ok(words.has(body.split(' ')[0] as string), body.split(' ')[0] ?? '')
})

t.test('Japanese and Chinese without spaces are cut between words', async (t) => {
  const ja = `${'これは検索機能についての長い説明文です。'.repeat(12)}東京の天気を調べます。${'その他の文章が続きます。'.repeat(12)}`
  const s = snippet(ja, '天気')
  t.ok(s.includes('天気'), s)
  t.ok(s.replace(/^…|…$/g, '').length <= SNIPPET_CHARS)
  const zh = `${'这是一个关于搜索功能的很长的说明。'.repeat(12)}安装代理的步骤如下。${'后面还有很多其他的内容。'.repeat(12)}`
  t.ok(snippet(zh, '安装代理').includes('安装代理'))
})

t.test('one word longer than the snippet is cut where the snippet ends', async (t) => {
  const url = `https://example.com/${'a'.repeat(500)}`
  const s = snippet(url, 'example')
  t.equal(s, `${url.slice(0, SNIPPET_CHARS)}…`)
})

t.test('a query of punctuation only: the start of the text', async (t) => {
  t.ok(snippet(filler(100), '?!…').startsWith('word0 '))
})

t.test('snippets stay right past the plain-text cache of the last chunks (500)', async (t) => {
  // More distinct chunks than the cache holds, then the first ones again: each snippet is the
  // chunk's own plain text, whether it was remembered, forgotten or never seen.
  const chunk = (i: number) => `## Chunk ${i}\n\n**body** of chunk ${i}`
  const first = Array.from({ length: 600 }, (_, i) => snippet(chunk(i), 'body'))
  t.same(first.slice(0, 3), [
    'Chunk 0 body of chunk 0',
    'Chunk 1 body of chunk 1',
    'Chunk 2 body of chunk 2',
  ])
  for (const i of [0, 1, 599]) t.equal(snippet(chunk(i), 'body'), first[i])
  t.equal(first[599], 'Chunk 599 body of chunk 599')
})

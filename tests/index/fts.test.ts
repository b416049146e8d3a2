import { ftsIndexCurrent, ftsIndexStale, openSearchIndex } from '@confluence-bot/index'
import t from 'tap'
import { tempUri, writeTable } from './search-helpers.ts'

// The chosen full-text tokenizer (fts.ts) on the languages spaces are written in, and the check
// that tells the worker an index was built with another one.

t.test('keyword search in English, Japanese, Chinese and Korean', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, [
    { page_id: 'en', text: 'The agent was installed on every server last week.' },
    { page_id: 'ja', text: '東京都の天気予報を毎朝確認します。' },
    { page_id: 'zh', text: '我们在服务器上安装了代理程序。' },
    { page_id: 'ko', text: '감사 로그 보존 기간은 설정 메뉴에서 바꿀 수 있습니다.' },
  ])
  const index = await openSearchIndex({ uri, embed: async () => null })
  t.teardown(() => index.close())
  const first = async (query: string) =>
    (await index.search({ query, mode: 'keyword', top_k: 1 })).results[0]?.page_id
  t.equal(await first('Installing agents'), 'en', 'English words are stemmed')
  t.equal(await first('天気'), 'ja', 'Japanese is segmented into words')
  t.equal(await first('代理程序'), 'zh', 'Chinese is segmented into words')
  t.equal(await first('감사 로그 보존'), 'ko', 'Korean words as written')
})

t.test('an index is current only with every chosen option', async (t) => {
  t.equal(ftsIndexCurrent({}), false)
  t.equal(ftsIndexCurrent({ indexDetails: { base_tokenizer: 'simple' } }), false)
  const uri = tempUri(t)
  const table = await writeTable(uri, [{ page_id: 'a', text: 'x' }])
  const [index] = await table.listIndices()
  t.equal(ftsIndexCurrent(index as NonNullable<typeof index>), true)
  t.equal(await ftsIndexStale(table), false)
  const bare = await writeTable(uri, [{ page_id: 'a', text: 'x' }], null, undefined, false)
  t.equal(await ftsIndexStale(bare), false, 'no index: nothing to rebuild')
})

t.test('a Korean question finds the word its page writes without the particle', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, [
    { page_id: 'bare', text: '프록시 서버 설정 안내' },
    { page_id: 'other', text: '일반 안내 문서입니다' },
  ])
  const index = await openSearchIndex({ uri, embed: async () => null })
  t.teardown(() => index.close())
  const res = await index.search({ query: '프록시를 쓰려면?', mode: 'keyword' })
  t.same(
    res.results.map((h) => h.page_id),
    ['bare'],
  )
})

import { openSearchIndex } from '@confluence-bot/index'
import t from 'tap'
import { mapEmbedder, tempUri, writeTable } from './search-helpers.ts'

t.test('the three modes return hits with scores and snippets', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, [
    { page_id: 'a', text: 'How to install the agent on Linux', vector: [1, 0, 0, 0] },
    { page_id: 'b', text: 'Rotating the audit logs', vector: [0, 1, 0, 0] },
    { page_id: 'c', text: 'Install notes for Windows', vector: [0.6, 0.8, 0, 0] },
  ])
  const { embed } = mapEmbedder({ 'install agent': [1, 0, 0, 0] })
  const index = await openSearchIndex({ uri, embed })
  t.teardown(() => index.close())
  const hybrid = await index.search({ query: 'install agent' })
  t.equal(hybrid.mode, 'hybrid')
  t.equal(hybrid.results[0]?.page_id, 'a')
  t.ok(hybrid.results.every((h) => h.similarity !== undefined))
  const vector = await index.search({ query: 'install agent', mode: 'vector' })
  t.same(
    vector.results.map((h) => h.page_id),
    ['a', 'c', 'b'],
  )
  t.equal(vector.results[0]?.similarity, 1)
  const keyword = await index.search({ query: 'install agent', mode: 'keyword' })
  t.equal(keyword.mode, 'keyword')
  t.same(keyword.results.map((h) => h.page_id).slice(0, 2), ['a', 'c'])
  t.ok(keyword.results.every((h) => (h.keyword_score as number) > 0))
})

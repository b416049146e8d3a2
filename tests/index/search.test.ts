import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { openSearchIndex, type SearchHit, SearchRequestError } from '@confluence-bot/index'
import { CHUNKS_TABLE } from '@confluence-bot/shared'
import * as lancedb from '@lancedb/lancedb'
import t, { type Test } from 'tap'
import { addRows, mapEmbedder, type RowSpec, tempUri, writeTable } from './search-helpers.ts'

// The search module against real LanceDB tables in temp directories. Vectors are 4-dimensional
// and chosen by hand, so which chunk is nearest is known; the embedder answers from a map.

const Q = [1, 0, 0, 0]
const ids = (hits: SearchHit[]) => hits.map((h) => h.page_id)

async function open(
  t: Test,
  uri: string,
  vectors: Record<string, number[]> = {},
  perPage?: number,
) {
  const embedder = mapEmbedder(vectors)
  const index = await openSearchIndex({ uri, embed: embedder.embed, perPage })
  t.teardown(() => index.close())
  return { index, calls: embedder.calls }
}

t.test('the three modes return hits with scores and snippets', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, [
    { page_id: 'a', text: 'How to install the agent on Linux', vector: [1, 0, 0, 0] },
    { page_id: 'b', text: 'Rotating the audit logs', vector: [0, 1, 0, 0] },
    { page_id: 'c', text: 'Install notes for Windows', vector: [0.6, 0.8, 0, 0] },
  ])
  const { index, calls } = await open(t, uri, { 'install agent': Q })
  const hybrid = await index.search({ query: 'install agent' })
  t.equal(hybrid.mode, 'hybrid')
  t.equal(hybrid.fallback, undefined)
  t.equal(hybrid.results[0]?.page_id, 'a')
  // Every hit has a vector: every hit has its similarity, whichever leg found it.
  t.ok(hybrid.results.every((h) => h.similarity !== undefined))
  t.ok((hybrid.results[0]?.keyword_score as number) > 0)
  t.ok((hybrid.results[0]?.score as number) > (hybrid.results[1]?.score as number))
  t.same(calls, [{ text: 'install agent', model: 'embed' }])

  const vector = await index.search({ query: 'install agent', mode: 'vector' })
  t.equal(vector.mode, 'vector')
  t.same(ids(vector.results), ['a', 'c', 'b'])
  t.equal(vector.results[0]?.similarity, 1)
  t.equal(vector.results[0]?.score, 1)
  t.ok(Math.abs((vector.results[1]?.similarity as number) - 0.6) < 1e-6)
  t.equal(vector.results[0]?.keyword_score, undefined)

  const keyword = await index.search({ query: 'install agent', mode: 'keyword' })
  t.equal(keyword.mode, 'keyword')
  t.same(ids(keyword.results), ['a', 'c'])
  t.ok(keyword.results.every((h) => (h.keyword_score as number) > 0 && h.similarity === undefined))
  t.equal(calls.length, 2, 'keyword mode embeds nothing')

  const hit = keyword.results[0] as SearchHit
  t.same(hit, {
    chunk_id: hit.chunk_id,
    page_id: 'a',
    source_id: 's1',
    title: 'Page a',
    breadcrumb: 'Space › Page a',
    heading_path: '',
    url: 'https://wiki.example/pages/a',
    space: 'ENG',
    updated_at: '2024-05-01T10:00:00.000Z',
    labels: [],
    score: hit.keyword_score,
    keyword_score: hit.keyword_score,
    text: 'How to install the agent on Linux',
    snippet: 'How to install the agent on Linux',
  })
})

t.test('top_k hits at most, best first', async (t) => {
  const uri = tempUri(t)
  const rows: RowSpec[] = Array.from({ length: 30 }, (_, i) => ({
    page_id: `p${i}`,
    text: `backup policy number ${i}`,
    vector: [1, i / 10, 0, 0],
  }))
  await writeTable(uri, rows)
  const { index } = await open(t, uri, { backup: Q })
  for (const mode of ['hybrid', 'vector', 'keyword'] as const) {
    const { results } = await index.search({ query: 'backup', mode, top_k: 4 })
    t.equal(results.length, 4, mode)
    const scores = results.map((h) => h.score)
    t.same(
      scores,
      [...scores].sort((a, b) => b - a),
      `${mode}: best first`,
    )
  }
  t.same(ids((await index.search({ query: 'backup', mode: 'vector', top_k: 3 })).results), [
    'p0',
    'p1',
    'p2',
  ])
  t.equal((await index.search({ query: 'backup' })).results.length, 10, 'default top_k')
})

t.test('filters run inside both legs: k allowed hits come back past better ones', async (t) => {
  const uri = tempUri(t)
  // 40 chunks outside the filter match the query best in both legs (exact vector, the words
  // three times); 6 allowed chunks match worse. A filter applied after a 20-candidate search
  // would find none of them.
  const rows: RowSpec[] = [
    ...Array.from({ length: 40 }, (_, i) => ({
      page_id: `x${i}`,
      space: 'OTHER',
      source_id: 's2',
      labels: ['other'],
      updated_at: '2020-01-01T00:00:00Z',
      text: 'vacation vacation vacation request policy',
      vector: Q,
    })),
    ...Array.from({ length: 6 }, (_, i) => ({
      page_id: `ok${i}`,
      labels: ['hr', `l${i}`],
      updated_at: `2024-06-0${i + 1}T09:00:00+09:00`,
      text: `vacation request form and many other words about leave ${i}`,
      vector: [0.5, 0.5, 0.5, i / 10],
    })),
  ]
  await writeTable(uri, rows)
  const { index } = await open(t, uri, { vacation: Q })
  const allowed = (hits: SearchHit[]) => hits.every((h) => h.page_id.startsWith('ok'))
  for (const mode of ['hybrid', 'vector', 'keyword'] as const) {
    for (const filters of [
      { spaces: ['ENG'] },
      { source_ids: ['s1'] },
      { labels: ['hr'] },
      { updated_after: '2024-01-01' },
      { spaces: ['ENG', 'NOPE'], labels: ['zzz', 'hr'], source_ids: ['s1'] },
    ]) {
      const res = await index.search({ query: 'vacation', mode, top_k: 5, filters })
      t.equal(res.mode, mode)
      t.equal(res.results.length, 5, `${mode} ${JSON.stringify(filters)}`)
      t.ok(allowed(res.results), `${mode} ${JSON.stringify(filters)}: only allowed chunks`)
    }
  }
  // Labels are "any of"; updated_after compares instants (a +09:00 time is 9 hours earlier in UTC).
  const labelled = await index.search({ query: 'vacation', filters: { labels: ['l1', 'l3'] } })
  t.same(ids(labelled.results).sort(), ['ok1', 'ok3'])
  const after = await index.search({
    query: 'vacation',
    mode: 'keyword',
    filters: { updated_after: '2024-06-05T23:59:00Z' },
  })
  t.same(ids(after.results), ['ok5'], '2024-06-06T09:00+09:00 is 00:00Z, after 23:59Z')
  const combined = await index.search({
    query: 'vacation',
    filters: { spaces: ['ENG'], labels: ['l2', 'other'], updated_after: '2024-06-01T00:00:00Z' },
  })
  t.same(ids(combined.results), ['ok2'])
})

t.test('an empty list allows nothing; crafted values stay literals', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, [
    { page_id: 'a', text: 'quarterly report', vector: Q },
    { page_id: 'b', space: "O'BRIEN", labels: ["it's"], text: 'quarterly report', vector: Q },
  ])
  const { index, calls } = await open(t, uri, { 'quarterly report': Q })
  for (const filters of [{ spaces: [] }, { source_ids: [] }, { labels: [] }]) {
    const res = await index.search({ query: 'quarterly report', filters })
    t.same(res, { mode: 'hybrid', results: [] }, JSON.stringify(filters))
  }
  t.equal(calls.length, 0, 'nothing is embedded for a search that may match nothing')
  for (const crafted of [
    "') OR 1=1 --",
    "ENG' OR '1'='1",
    "x') OR TRUE OR ('",
    "\\'; DROP TABLE chunks; --",
  ]) {
    for (const filters of [
      { spaces: [crafted] },
      { labels: [crafted] },
      { source_ids: [crafted] },
    ]) {
      const res = await index.search({ query: 'quarterly report', filters })
      t.same(res.results, [], `${JSON.stringify(filters)} matches nothing`)
    }
  }
  const quoted = await index.search({ query: 'quarterly report', filters: { spaces: ["O'BRIEN"] } })
  t.same(ids(quoted.results), ['b'])
  const label = await index.search({ query: 'quarterly report', filters: { labels: ["it's"] } })
  t.same(ids(label.results), ['b'])
  const db = await lancedb.connect(uri)
  t.equal(await (await db.openTable(CHUNKS_TABLE)).countRows(), 2, 'the table is untouched')
})

t.test('invalid requests are SearchRequestErrors (400)', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, [{ page_id: 'a', text: 'x', vector: Q }])
  const { index } = await open(t, uri)
  for (const request of [
    { query: 'x', top_k: 0 },
    { query: 'x', top_k: 101 },
    { query: 'x', top_k: 1.5 },
    { query: 'x', per_page: 0 },
    { query: 'x', filters: { updated_after: 'yesterday' } },
    { query: 'x', filters: { updated_after: 'May 1, 2024' } },
    { query: 'x', filters: { updated_after: '2024-13-45' } },
  ]) {
    await t.rejects(index.search(request), SearchRequestError, JSON.stringify(request))
  }
  const err = await index.search({ query: 'x', top_k: 0 }).catch((e: SearchRequestError) => e)
  t.equal((err as SearchRequestError).statusCode, 400)
  t.match((err as SearchRequestError).message, /top_k must be a whole number from 1 to 100/)
  await t.rejects(openSearchIndex({ uri, embed: async () => null, perPage: 0 }), SearchRequestError)
})

t.test('at most per_page chunks of one page among the hits', async (t) => {
  const uri = tempUri(t)
  // Page "big" has 30 chunks that all match best; four other pages match worse.
  const rows: RowSpec[] = [
    ...Array.from({ length: 30 }, () => ({
      page_id: 'big',
      text: 'kubernetes kubernetes kubernetes cluster',
      vector: Q,
    })),
    ...['a', 'b', 'c', 'd'].map((p, i) => ({
      page_id: p,
      text: `kubernetes notes ${p} with more words around`,
      vector: [0.5, 0.5, i / 10, 0],
    })),
  ]
  await writeTable(uri, rows)
  const { index } = await open(t, uri, { kubernetes: Q })
  for (const mode of ['hybrid', 'vector', 'keyword'] as const) {
    const res = await index.search({ query: 'kubernetes', mode, top_k: 5 })
    t.same(ids(res.results).filter((p) => p === 'big').length, 2, `${mode}: two of big`)
    t.equal(res.results.length, 5)
    t.equal(res.results[0]?.page_id, 'big', `${mode}: big still ranks first`)
    // One chunk a page: all 30 of big come first in each leg (more than the 20 candidates
    // asked for at first), and the search asks again for more.
    const one = await index.search({ query: 'kubernetes', mode, top_k: 5, per_page: 1 })
    t.same(ids(one.results).sort(), ['a', 'b', 'big', 'c', 'd'], `${mode}: one chunk a page`)
  }
  const few = await index.search({ query: 'kubernetes', top_k: 10, per_page: 1 })
  t.same(ids(few.results).sort(), ['a', 'b', 'big', 'c', 'd'], 'fewer pages than top_k')
  const { index: onePerPage } = await open(t, uri, { kubernetes: Q }, 1)
  const res = await onePerPage.search({ query: 'kubernetes', top_k: 3 })
  t.same(new Set(ids(res.results)).size, 3, "the index's default per page")
})

t.test('keyword fallback says why', async (t) => {
  await t.test('no vector column', async (t) => {
    const uri = tempUri(t)
    await writeTable(uri, [{ page_id: 'a', text: 'release checklist' }], null)
    const { index, calls } = await open(t, uri, { release: Q })
    const res = await index.search({ query: 'release' })
    t.equal(res.mode, 'keyword')
    t.match(res.fallback, /no vectors yet/)
    t.same(ids(res.results), ['a'])
    t.equal(calls.length, 0)
    const vector = await index.search({ query: 'release', mode: 'vector' })
    t.equal(vector.mode, 'keyword')
  })
  await t.test('no row has a vector yet', async (t) => {
    const uri = tempUri(t)
    await writeTable(uri, [{ page_id: 'a', text: 'release checklist' }])
    const { index, calls } = await open(t, uri, { release: Q })
    const res = await index.search({ query: 'release' })
    t.equal(res.mode, 'keyword')
    t.equal(res.fallback, 'no chunk has a vector yet (embed has not embedded any)')
    t.same(ids(res.results), ['a'])
    t.equal(calls.length, 0)
    // Vectors arrive: the next search (a new table version) sees them.
    await addRows(uri, [{ page_id: 'b', text: 'release train', vector: Q }])
    const later = await index.search({ query: 'release' })
    t.equal(later.mode, 'hybrid')
    t.same(ids(later.results).sort(), ['a', 'b'], 'the row without a vector is still found')
    t.equal(later.results.find((h) => h.page_id === 'a')?.similarity, undefined)
  })
  await t.test('the embedder cannot reach the model, fails, or answers another size', async (t) => {
    const uri = tempUri(t)
    await writeTable(uri, [{ page_id: 'a', text: 'release checklist', vector: Q }])
    const answers: Array<Float32Array | null | Error> = [
      null,
      new Error('Ollama said 500'),
      new Float32Array(3),
    ]
    const index = await openSearchIndex({
      uri,
      embed: async () => {
        const answer = answers.shift() as Float32Array | null | Error
        if (answer instanceof Error) throw answer
        return answer
      },
    })
    t.teardown(() => index.close())
    const reasons = []
    for (let i = 0; i < 3; i++) {
      const res = await index.search({ query: 'release', mode: 'vector' })
      t.equal(res.mode, 'keyword')
      t.same(ids(res.results), ['a'])
      reasons.push(res.fallback)
    }
    t.same(reasons, [
      'the embedding model embed cannot be reached',
      'the embedding model embed failed: Ollama said 500',
      'the embedding model embed answered with 3 dimensions, the index holds 4',
    ])
  })
})

t.test('the query is embedded with the recorded model and query prefix', async (t) => {
  const uri = tempUri(t)
  await writeTable(
    uri,
    [{ page_id: 'a', text: 'single sign-on setup', vector: Q }],
    { model: 'nomic-embed-text', dim: 4 },
    'search_query: ',
  )
  const { index, calls } = await open(t, uri, { 'search_query: sso setup': Q })
  const res = await index.search({ query: 'sso setup' })
  t.equal(res.mode, 'hybrid')
  t.same(calls, [{ text: 'search_query: sso setup', model: 'nomic-embed-text' }])
})

t.test('no table yet: no hits, not an error; it may appear later', async (t) => {
  const uri = tempUri(t)
  const { index, calls } = await open(t, uri, { x: Q })
  t.same(await index.search({ query: 'x' }), { mode: 'hybrid', results: [] })
  t.same(await index.search({ query: 'x', mode: 'keyword' }), { mode: 'keyword', results: [] })
  t.equal(calls.length, 0)
  await writeTable(uri, [{ page_id: 'a', text: 'x marks the spot', vector: Q }])
  t.same(ids((await index.search({ query: 'x' })).results), ['a'])
})

t.test('a table dropped and recreated under the open index', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, [{ page_id: 'a', text: 'incident runbook', vector: Q }])
  const { index } = await open(t, uri, { incident: Q })
  t.same(ids((await index.search({ query: 'incident' })).results), ['a'])
  const db = await lancedb.connect(uri)
  await db.dropTable(CHUNKS_TABLE)
  t.same((await index.search({ query: 'incident' })).results, [], 'dropped: no hits')
  // Recreated without a vector column (a model change in progress), then with one of 8 values.
  await writeTable(uri, [{ page_id: 'b', text: 'incident review' }], null)
  const keyword = await index.search({ query: 'incident' })
  t.same([keyword.mode, ids(keyword.results)], ['keyword', ['b']])
  await db.dropTable(CHUNKS_TABLE)
  await writeTable(
    uri,
    [{ page_id: 'c', text: 'incident drill', vector: [1, 0, 0, 0, 0, 0, 0, 0] }],
    {
      model: 'embed',
      dim: 8,
    },
  )
  const { index: eight } = await open(t, uri, { incident: [1, 0, 0, 0, 0, 0, 0, 0] })
  t.same(ids((await eight.search({ query: 'incident' })).results), ['c'])
  const again = await index.search({ query: 'incident', mode: 'keyword' })
  t.same(ids(again.results), ['c'])
})

t.test('a table whose files are gone fails after two more tries, concurrently too', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, [{ page_id: 'a', text: 'incident runbook', vector: Q }])
  const { index } = await open(t, uri, { incident: Q })
  t.same(ids((await index.search({ query: 'incident' })).results), ['a'])
  rmSync(join(uri, `${CHUNKS_TABLE}.lance`, 'data'), { recursive: true, force: true })
  const all = await Promise.allSettled(
    Array.from({ length: 4 }, () => index.search({ query: 'incident', mode: 'keyword' })),
  )
  for (const result of all) {
    t.equal(result.status, 'rejected')
    t.notMatch(
      String((result as PromiseRejectedResult).reason),
      /Cannot read properties/,
      'a storage error, not a race on the shared handle',
    )
  }
})

t.test('crafted queries are searched as words, never an error', async (t) => {
  const uri = tempUri(t)
  await writeTable(uri, [
    { page_id: 'a', text: 'text:value pairs (and) "quoted" words OR more', vector: Q },
    { page_id: 'b', text: '설치 방법 안내', vector: [0, 1, 0, 0] },
  ])
  const queries = [
    '"unclosed quote',
    '(a AND (b OR',
    'text:value',
    '*',
    'foo~2',
    '🦊🚀',
    'x'.repeat(10_000),
    '!!!???...',
    "') OR 1=1 --",
    'NOT AND OR',
    '+-&&||!(){}[]^"~*?:\\/',
    '설치를 하려면?',
    '   ',
    '',
  ]
  const index = await openSearchIndex({ uri, embed: async () => Float32Array.from(Q) })
  t.teardown(() => index.close())
  for (const query of queries) {
    for (const mode of ['hybrid', 'vector', 'keyword'] as const) {
      const res = await index.search({ query, mode })
      t.ok(Array.isArray(res.results), `${mode} ${query.slice(0, 20)}`)
    }
  }
  const words = await index.search({ query: 'text:value', mode: 'keyword' })
  t.same(ids(words.results), ['a'], 'field:value is words')
  t.same(await index.search({ query: '  ' }), { mode: 'hybrid', results: [] })
})

t.test('similarity of a hybrid hit only the keyword leg found', async (t) => {
  const uri = tempUri(t)
  // 25 chunks of one page nearer the query than "far" (similarity 0.6) fill the vector leg's 20 candidates (top 5
  // asks for 20); only the keyword leg finds "far", and its similarity is computed from its
  // stored vector. "zero" has a zero vector (similarity 0), "none" none at all. Two chunks of
  // "near" make the cut per page, which leaves room for the three the keyword leg found.
  const rows: RowSpec[] = [
    ...Array.from({ length: 25 }, (_, i) => ({
      page_id: 'near',
      text: `unrelated words ${i}`,
      vector: [1, i / 100, 0, 0],
    })),
    { page_id: 'far', text: 'zebra crossing rules', vector: [0.6, 0, 0.8, 0] },
    { page_id: 'zero', text: 'zebra stripes', vector: [0, 0, 0, 0] },
    { page_id: 'none', text: 'zebra herd' },
  ]
  await writeTable(uri, rows)
  const { index } = await open(t, uri, { zebra: Q })
  const res = await index.search({ query: 'zebra', top_k: 5 })
  const by = (p: string) => res.results.find((h) => h.page_id === p) as SearchHit
  t.ok(by('far'), 'found by the keyword leg')
  // Its own similarity (0.6), not 0: the stored vector is read as numbers.
  t.ok(Math.abs((by('far').similarity as number) - 0.6) < 1e-6, `${by('far').similarity}`)
  t.equal(by('zero').similarity, 0)
  t.equal(by('none').similarity, undefined)
  t.ok((by('near').similarity as number) > 0.99)
  t.ok(by('far').keyword_score)
})

t.test('close() without a table, and twice', async (t) => {
  const uri = tempUri(t)
  const index = await openSearchIndex({ uri, embed: async () => null })
  await index.close()
  await index.close()
  t.pass()
})

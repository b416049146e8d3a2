import t from 'tap'
import { READER_KEY } from '../../helpers/api.ts'
import { ENG_KEY, groundedRig, type Json, post } from '../../helpers/grounded.ts'

// POST /api/search over a real socket, against an index a real worker built.

t.test('search over the index, over a real socket', async (t) => {
  const { url, rig } = await groundedRig(t)
  const search = (body: unknown, key = READER_KEY) => post(`${url}/api/search`, key, body)
  const titles = (json: Json) => (json.results as Json[]).map((hit) => hit.title)

  t.test('hybrid by default: every field of a hit', async (t) => {
    const res = await search({ query: 'How do I roll back the billing deployment?' })
    t.equal(res.status, 200, res.text)
    t.equal(res.json.mode, 'hybrid')
    t.notOk('fallback' in res.json)
    const top = res.json.results[0]
    t.match(top, {
      chunk_id: /:101:/,
      page_id: '101',
      source_id: String,
      title: 'Deploying the billing service',
      breadcrumb: /Deploying the billing service/,
      heading_path: String,
      url: /^http.*101/,
      space: 'ENG',
      updated_at: '2024-06-10T08:00:00.000Z',
      labels: ['runbook'],
      score: Number,
      similarity: Number,
      text: /helm/,
      snippet: /roll/i,
    })
  })

  t.test('vector and keyword alone', async (t) => {
    for (const mode of ['vector', 'keyword'] as const) {
      const res = await search({ query: 'rotate the postgres password in vault', mode })
      t.equal(res.status, 200, res.text)
      t.equal(res.json.mode, mode)
      t.equal(titles(res.json)[0], 'Rotating database passwords', mode)
    }
  })

  t.test('filters run inside the query', async (t) => {
    const ops = await search({ query: 'billing', spaces: ['OPS'] })
    t.ok(ops.json.results.length > 0)
    t.same(new Set((ops.json.results as Json[]).map((h) => h.space)), new Set(['OPS']))
    const labelled = await search({ query: 'billing', labels: ['runbook'] })
    t.ok(labelled.json.results.length > 0)
    for (const hit of labelled.json.results as Json[]) t.ok(hit.labels.includes('runbook'))
    const recent = await search({ query: 'password rotation', updated_after: '2024-01-01' })
    t.notOk(titles(recent.json).includes('Rotating database passwords'), 'an old page is left out')
    const one = await search({ query: 'billing', top_k: 1 })
    t.equal(one.json.results.length, 1)
  })

  t.test('a key limited to a space never sees another', async (t) => {
    const all = await search({ query: 'on-call paging Opsgenie rotation' }, ENG_KEY)
    t.equal(all.status, 200)
    for (const hit of all.json.results as Json[]) t.equal(hit.space, 'ENG')
    const asked = await search({ query: 'Opsgenie', spaces: ['OPS'] }, ENG_KEY)
    t.same(asked.json.results, [], 'asking for a space it may not read finds nothing')
    const both = await search({ query: 'billing', spaces: ['ENG', 'OPS'] }, ENG_KEY)
    for (const hit of both.json.results as Json[]) t.equal(hit.space, 'ENG')
    const reader = await search({ query: 'Opsgenie', spaces: ['OPS'] })
    t.ok(reader.json.results.length > 0, 'a key of every space does see it')
  })

  t.test('bad requests are 400 with a message naming the problem', async (t) => {
    const cases: Array<[unknown, RegExp]> = [
      [{}, /query/],
      [{ query: '' }, /query/],
      [{ query: '   ' }, /query/],
      [{ query: 'x', top_k: 0 }, /top_k/],
      [{ query: 'x', mode: 'semantic' }, /mode/],
      [{ query: 'x', spaces: 'ENG' }, /spaces/],
      [{ query: 'x', updated_after: 'yesterday!' }, /updated_after/],
      [{ query: 'x', colour: 'red' }, /colour|additional/],
      [{ query: 'x'.repeat(2001) }, /query/],
    ]
    for (const [body, message] of cases) {
      const res = await search(body)
      t.equal(res.status, 400, JSON.stringify(body))
      t.equal(res.json.error, 'validation_failed')
      t.match(res.json.message, message)
    }
  })

  t.test('crafted queries and filter values stay literals', async (t) => {
    for (const query of ['"unbalanced', 'a AND (b OR', 'title:x', '*', "') OR 1=1 --", '💥']) {
      const res = await search({ query })
      t.equal(res.status, 200, `${query}: ${res.text}`)
    }
    const res = await search({ query: 'billing', spaces: ["ENG') OR ('1'='1"] })
    t.same(res.json.results, [])
  })

  t.test('no key: 401', async (t) => {
    const res = await fetch(`${url}/api/search`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"query":"x"}',
    })
    t.equal(res.status, 401)
  })

  t.test('the embedding model not pulled: keyword, and the response says why', async (t) => {
    const models = rig.ollama.options.models
    rig.ollama.options.models = models.filter((m) => !/embed/.test(m.name))
    t.teardown(() => {
      rig.ollama.options.models = models
    })
    const res = await search({ query: 'rotate the postgres password' })
    t.equal(res.status, 200)
    t.equal(res.json.mode, 'keyword')
    t.match(res.json.fallback, /embedding model .* failed: .* is not pulled .*\(ollama pull /)
    t.equal(titles(res.json)[0], 'Rotating database passwords')
  })
})

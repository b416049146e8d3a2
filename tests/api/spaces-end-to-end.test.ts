import t from 'tap'
import { ADMIN_KEY, bearer, listenTestApp } from '../helpers/api.ts'
import { generatedSpace, ingestRig, rigApiEnv } from '../helpers/ingest.ts'

// A key limited to one space, end to end over real HTTP on an index holding two spaces: search,
// grounded chat (its prompt, its sources) and conversations never show it the other space.

const ENG_KEY = 'k3y-for-eng-team-0001'
const ALL_KEY = 'k3y-for-everyone-00002'

type Json = Record<string, unknown>

// Two spaces of generated pages (the second's ids moved so both fit one Confluence).
const opsPages = generatedSpace(6, 'OPS').map((p) => ({
  ...p,
  id: String(Number(p.id) + 1000),
  parentId: p.parentId === undefined ? undefined : String(Number(p.parentId) + 1000),
}))
const pages = [...generatedSpace(6, 'ENG'), ...opsPages]

t.test('a key limited to ENG never sees OPS', async (t) => {
  const rig = await ingestRig(t, { pages })
  await rig.startWorker()
  const source = await rig.register()
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'completed', run.failedReason ?? '')

  const { url } = await listenTestApp(t, {
    ...rigApiEnv(rig),
    OLLAMA_URL: rig.ollama.url,
    API_KEYS: `${ENG_KEY}:ENG,${ALL_KEY}`,
    ADMIN_API_KEYS: ADMIN_KEY,
    // Every excerpt counts as relevant: what is left out here is left out for its space alone.
    RAG_ENABLED: 'true',
    RAG_MIN_SIMILARITY: '0',
    RAG_REWRITE_FOLLOW_UPS: 'false',
  })
  const post = async (path: string, key: string, body: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { ...bearer(key), 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    return { status: res.status, json: (await res.json()) as Json }
  }
  const spacesOf = (hits: unknown) => new Set((hits as Json[]).map((h) => h.space))

  t.test('search', async (t) => {
    for (const mode of ['keyword', 'vector', 'hybrid']) {
      const query = { query: 'Words about topic and the space', top_k: 20, per_page: 5, mode }
      const all = await post('/api/search', ALL_KEY, query)
      t.equal(all.status, 200, JSON.stringify(all.json))
      t.same(spacesOf(all.json.results), new Set(['ENG', 'OPS']), `${mode}: a key of every space`)

      const eng = await post('/api/search', ENG_KEY, query)
      t.equal(eng.status, 200)
      t.same(spacesOf(eng.json.results), new Set(['ENG']), `${mode}: only ENG`)
      // The filter is in the query: the limited key still gets as many hits as ENG holds.
      const engOnly = (all.json.results as Json[]).filter((h) => h.space === 'ENG').length
      t.ok((eng.json.results as Json[]).length >= engOnly, `${mode}: a full share of ENG`)

      const asked = await post('/api/search', ENG_KEY, { ...query, spaces: ['OPS'] })
      t.equal(asked.status, 200)
      t.same(asked.json.results, [], `${mode}: asking for OPS finds nothing`)
    }
  })

  t.test('grounded chat: prompt and sources', async (t) => {
    const before = rig.ollama.requests.length
    const res = await post('/api/chat', ENG_KEY, {
      messages: [
        { role: 'user', content: 'Words about topic in the OPS space and the ENG space?' },
      ],
      rag: { spaces: ['ENG', 'OPS'], top_k: 10 },
    })
    t.equal(res.status, 200, JSON.stringify(res.json))
    const sources = res.json.sources as Json[]
    t.ok(sources.length > 0, `the answer is grounded: ${JSON.stringify(res.json)}`)
    t.same(spacesOf(sources), new Set(['ENG']))
    const prompts = rig.ollama.requests
      .slice(before)
      .filter((r) => r.path === '/api/chat')
      .map((r) => r.rawBody)
    t.ok(prompts.length > 0)
    for (const prompt of prompts)
      t.notMatch(prompt, /of OPS/, 'no OPS page title reaches the model')

    // The conversation is the ENG key's alone.
    const id = res.json.conversation_id as string
    t.match(id, /^conv_/)
    const own = await fetch(`${url}/api/conversations/${id}`, { headers: bearer(ENG_KEY) })
    t.equal(own.status, 200)
    const stored = (await own.json()) as { messages: Json[] }
    t.same(spacesOf(stored.messages.at(-1)?.sources), new Set(['ENG']), 'stored sources too')
    const other = await fetch(`${url}/api/conversations/${id}`, { headers: bearer(ALL_KEY) })
    t.equal(other.status, 404)
    const followUp = await post('/api/chat', ALL_KEY, {
      conversation_id: id,
      messages: [{ role: 'user', content: 'and OPS?' }],
    })
    t.equal(followUp.status, 404, 'another key cannot continue it')
  })

  t.test("a streamed answer's sources line too", async (t) => {
    const res = await fetch(`${url}/api/chat`, {
      method: 'POST',
      headers: { ...bearer(ENG_KEY), 'content-type': 'application/json' },
      body: JSON.stringify({
        messages: [{ role: 'user', content: 'Words about topic in the OPS space?' }],
        stream: true,
      }),
    })
    t.equal(res.status, 200)
    const first = JSON.parse((await res.text()).split('\n')[0] as string) as Json
    t.ok((first.sources as Json[]).length > 0)
    t.same(spacesOf(first.sources), new Set(['ENG']))
  })

  t.test('a key of every space is grounded in both', async (t) => {
    const before = rig.ollama.requests.length
    const res = await post('/api/chat', ALL_KEY, {
      messages: [
        { role: 'user', content: 'Words about topic in the OPS space and the ENG space?' },
      ],
      rag: { top_k: 12 },
    })
    t.equal(res.status, 200)
    t.same(spacesOf(res.json.sources), new Set(['ENG', 'OPS']))
    const prompt = rig.ollama.requests.slice(before).find((r) => r.path === '/api/chat')
    t.match(prompt?.rawBody, /of OPS/, 'OPS pages reach the model for it')
  })
})

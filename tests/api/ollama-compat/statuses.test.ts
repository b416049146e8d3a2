import { createServer } from 'node:http'
import t from 'tap'
import { listenTestApp, READER_KEY } from '../../helpers/api.ts'
import type { Json } from '../../helpers/grounded.ts'
import { standIn } from '../../helpers/ollama.ts'

// Every status an /ollama route documents, provoked over a real socket, each answered in
// Ollama's `{"error":"…"}` shape (nothing else in the body); and the OpenAPI document lists
// each route under `ollama-compatible` with exactly those statuses.

type Route = { method: 'GET' | 'POST'; path: string; body?: Json }

const ROUTES: Route[] = [
  { method: 'GET', path: '/' },
  { method: 'GET', path: '/api/version' },
  { method: 'GET', path: '/api/ps' },
  { method: 'GET', path: '/api/tags' },
  { method: 'POST', path: '/api/show', body: { model: 'nope' } },
  { method: 'POST', path: '/api/embed', body: { model: 'nope', input: 'x' } },
  {
    method: 'POST',
    path: '/api/chat',
    body: { model: 'nope', messages: [{ role: 'user', content: 'hi' }] },
  },
  { method: 'POST', path: '/api/generate', body: { model: 'nope', prompt: 'hi' } },
]
const GET_STATUSES = [401, 403, 502, 503]
const POST_STATUSES = [400, 401, 403, 404, 413, 415, 502, 503]
const statusesOf = (route: Route) => (route.method === 'GET' ? GET_STATUSES : POST_STATUSES)

t.test('each documented status, over a real socket, in Ollama’s shape', async (t) => {
  const stand = await standIn(t)
  const env = { API_KEYS: READER_KEY, BODY_LIMIT: '2048' }
  const live = await listenTestApp(t, { ...env, OLLAMA_URL: stand.url })
  const down = await listenTestApp(t, env)
  // OLLAMA_URL naming another server: a 200 that is no Ollama answer, 404 pages elsewhere.
  const other = createServer((req, res) => {
    if (req.url === '/api/version') res.end('hello')
    else res.writeHead(404).end('nothing here')
  })
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => other.close(resolve)))
  const { port } = other.address() as { port: number }
  const wrong = await listenTestApp(t, { ...env, OLLAMA_URL: `http://127.0.0.1:${port}` })

  const plain = { model: 'llama3.2' }
  for (const route of ROUTES) {
    const send = (
      url: string,
      options: { key?: string | null; body?: string; type?: string; origin?: string } = {},
    ) => {
      const headers: Record<string, string> = { 'content-type': options.type ?? 'application/json' }
      const key = options.key === undefined ? READER_KEY : options.key
      if (key !== null) headers.authorization = `Bearer ${key}`
      if (options.origin) headers.origin = options.origin
      const body = options.body ?? JSON.stringify(route.body)
      return fetch(`${url}/ollama${route.path}`, {
        method: route.method,
        headers,
        ...(route.method === 'POST' ? { body } : {}),
      })
    }
    const valid = JSON.stringify({ ...route.body, ...plain })
    const provoke: Record<number, () => Promise<Response>> = {
      400: () => send(live.url, { body: '{"model":' }),
      401: () => send(live.url, { key: null }),
      403: () => send(live.url, { origin: 'https://evil.example' }),
      404: () => send(live.url),
      413: () => send(live.url, { body: JSON.stringify({ ...route.body, pad: 'x'.repeat(4096) }) }),
      415: () => send(live.url, { type: 'application/xml' }),
      502: () => send(wrong.url, { body: valid }),
      503: () => send(down.url, { body: valid }),
    }
    for (const status of statusesOf(route)) {
      const res = await (provoke[status] as () => Promise<Response>)()
      const label = `${route.method} ${route.path} ${status}`
      t.equal(res.status, status, label)
      t.match(res.headers.get('content-type'), /^application\/json/, label)
      const body = (await res.json()) as Json
      t.same(Object.keys(body), ['error'], `${label}: {error} alone`)
      t.match(body.error, /\w/, `${label}: says what went wrong`)
      t.notMatch(body.error, new RegExp(READER_KEY), `${label}: no key in it`)
    }
  }
})

t.test('the OpenAPI document lists each route with its statuses', async (t) => {
  const { url } = await listenTestApp(t)
  const doc = (await (await fetch(`${url}/docs/json`)).json()) as Json
  t.ok(
    doc.tags.some(
      (tag: Json) => tag.name === 'ollama-compatible' && /\+confluence/.test(tag.description),
    ),
    'the tag is described',
  )
  for (const route of ROUTES) {
    const path = `/ollama${route.path}`.replace(/\/$/, '')
    const op = (doc.paths[path] ?? doc.paths[`${path}/`])?.[route.method.toLowerCase()] as Json
    t.ok(op, `${route.method} ${path} is documented`)
    t.same(op.tags, ['ollama-compatible'])
    t.match(op.summary, /\w/)
    t.same(
      Object.keys(op.responses)
        .map(Number)
        .sort((a, b) => a - b),
      [200, ...statusesOf(route)],
      `${route.method} ${path} documents what the test provokes`,
    )
    if (route.method === 'POST') t.ok(op.requestBody.content['application/json'].schema)
    t.same(op.responses['401'].content['application/json'].schema.properties, {
      error: { type: 'string', description: 'What went wrong, for a person' },
    })
  }
})

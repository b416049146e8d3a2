import { createServer, request } from 'node:http'
import t from 'tap'
import { listenTestApp, READER_KEY } from '../../helpers/api.ts'
import type { Json } from '../../helpers/grounded.ts'
import { silentOllama, standIn } from '../../helpers/ollama.ts'
import { startRedis } from '../../helpers/redis.ts'

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
  { method: 'POST', path: '/api/embeddings', body: { model: 'nope', prompt: 'x' } },
  {
    method: 'POST',
    path: '/api/chat',
    body: { model: 'nope', messages: [{ role: 'user', content: 'hi' }] },
  },
  { method: 'POST', path: '/api/generate', body: { model: 'nope', prompt: 'hi' } },
]
const GET_STATUSES = [401, 403, 429, 502, 503, 504]
const POST_STATUSES = [400, 401, 403, 404, 413, 415, 429, 502, 503]
const statusesOf = (route: Route) => (route.method === 'GET' ? GET_STATUSES : POST_STATUSES)

type Probe = { key?: string | null; body?: string; type?: string; headers?: Record<string, string> }
type Answer = { status: number; type: string; text: string }

/** One HTTP exchange with exactly these headers (fetch would not send a Host of our own). */
function exchange(
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        text += chunk
      })
      res.on('end', () =>
        resolve({
          status: res.statusCode as number,
          type: String(res.headers['content-type']),
          text,
        }),
      )
    })
    req.on('error', reject)
    req.end(body)
  })
}

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
  const stuck = await listenTestApp(t, {
    ...env,
    // An Ollama that accepts connections and never answers (a hung server).
    OLLAMA_URL: await silentOllama(t),
    OLLAMA_RESPONSE_TIMEOUT_MS: '300',
  })
  // One request a minute, spent here: every request after it is over the limit.
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const limited = await listenTestApp(t, {
    ...env,
    OLLAMA_URL: stand.url,
    REDIS_URL: redis.url,
    RATE_LIMIT_PER_MINUTE: '1',
  })
  const spent = await exchange(`${limited.url}/ollama/api/version`, 'GET', {
    authorization: `Bearer ${READER_KEY}`,
  })
  t.equal(spent.status, 200, 'the one request of the minute')

  const plain = { model: 'llama3.2' }
  for (const route of ROUTES) {
    const send = (base: string, probe: Probe = {}) => {
      const headers: Record<string, string> = { ...probe.headers }
      headers['content-type'] = probe.type ?? 'application/json'
      const key = probe.key === undefined ? READER_KEY : probe.key
      if (key !== null) headers.authorization = `Bearer ${key}`
      const body = route.method === 'POST' ? (probe.body ?? JSON.stringify(route.body)) : undefined
      return exchange(`${base}/ollama${route.path}`, route.method, headers, body)
    }
    const valid = JSON.stringify({ ...route.body, ...plain })
    const probes: Record<number, Array<[string, () => Promise<Answer>]>> = {
      400: [
        ['malformed JSON', () => send(live.url, { body: '{"model":' })],
        ['an empty body', () => send(live.url, { body: '' })],
        ['a field of the wrong type', () => send(live.url, { body: '{"model":5}' })],
      ],
      401: [
        ['no key', () => send(live.url, { key: null })],
        ['an unknown key', () => send(live.url, { key: 'not-a-key-0123456789abcdef' })],
      ],
      403: [
        [
          'a page of another site',
          () => send(live.url, { headers: { origin: 'https://evil.example' } }),
        ],
        [
          'a rebound host name',
          () => send(live.url, { headers: { host: 'rebind.attacker.example' } }),
        ],
      ],
      404: [['a model Ollama does not have', () => send(live.url)]],
      413: [
        [
          'a body over BODY_LIMIT',
          () => send(live.url, { body: JSON.stringify({ ...route.body, pad: 'x'.repeat(4096) }) }),
        ],
      ],
      415: [['a body that is not JSON', () => send(live.url, { type: 'application/xml' })]],
      429: [['a key past RATE_LIMIT_PER_MINUTE', () => send(limited.url, { body: valid })]],
      502: [['OLLAMA_URL is some other server', () => send(wrong.url, { body: valid })]],
      503: [['Ollama is down', () => send(down.url, { body: valid })]],
      504: [['Ollama never answers', () => send(stuck.url, { body: valid })]],
    }
    for (const status of statusesOf(route)) {
      for (const [what, probe] of probes[status] ?? []) {
        const res = await probe()
        const label = `${route.method} ${route.path} ${status}, ${what}`
        t.equal(res.status, status, label)
        t.match(res.type, /^application\/json/, label)
        const body = JSON.parse(res.text) as Json
        t.same(Object.keys(body), ['error'], `${label}: {error} alone`)
        t.match(body.error, /\w/, `${label}: says what went wrong`)
        t.notOk(res.text.includes(READER_KEY), `${label}: no key in it`)
      }
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

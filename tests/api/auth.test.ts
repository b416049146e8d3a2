import t from 'tap'
import { ADMIN_KEY, bearer, buildTestApp, READER_KEY } from '../helpers/api.ts'
import { standIn } from '../helpers/ollama.ts'

const keys = { API_KEYS: READER_KEY, ADMIN_API_KEYS: ADMIN_KEY }
const basic = (password: string) => ({
  authorization: `Basic ${Buffer.from(`operator:${password}`).toString('base64')}`,
})

type Case = {
  method: 'GET' | 'POST'
  url: string
  payload?: object
  role: 'open' | 'reader' | 'admin'
}
const routes: Case[] = [
  { method: 'GET', url: '/api/health', role: 'open' },
  { method: 'GET', url: '/api/health/live', role: 'open' },
  { method: 'GET', url: '/docs/json', role: 'open' },
  { method: 'GET', url: '/docs', role: 'open' },
  {
    method: 'POST',
    url: '/api/chat',
    payload: { messages: [{ role: 'user', content: 'hi' }] },
    role: 'reader',
  },
  { method: 'POST', url: '/api/generate', payload: { prompt: 'hi' }, role: 'reader' },
  { method: 'GET', url: '/api/models', role: 'reader' },
  { method: 'POST', url: '/api/pull', payload: { name: 'tinyllama' }, role: 'admin' },
  { method: 'GET', url: '/admin/config', role: 'admin' },
  { method: 'GET', url: '/admin/queues', role: 'admin' },
]

const credentials: Array<[string, Record<string, string>, 'none' | 'reader' | 'admin']> = [
  ['no key', {}, 'none'],
  ['an unknown key', bearer('not-a-configured-key-000'), 'none'],
  ['a malformed header', { authorization: `Token ${READER_KEY}` }, 'none'],
  ['a reader key', bearer(READER_KEY), 'reader'],
  ['an admin key', bearer(ADMIN_KEY), 'admin'],
  ['an admin key over Basic', basic(ADMIN_KEY), 'admin'],
  [
    'Basic without a password',
    { authorization: `Basic ${Buffer.from('nobody').toString('base64')}` },
    'none',
  ],
  [
    'Basic with an empty password',
    { authorization: `Basic ${Buffer.from('nobody:').toString('base64')}` },
    'none',
  ],
]

const allowed = (role: Case['role'], who: 'none' | 'reader' | 'admin') =>
  role === 'open' || (role === 'reader' && who !== 'none') || who === 'admin'

t.test('the auth matrix: open, reader and admin routes against every kind of key', async (t) => {
  const ollama = await standIn(t, { pullTickMs: 1 })
  const app = await buildTestApp(t, { ...keys, OLLAMA_URL: ollama.url })
  for (const route of routes) {
    for (const [label, headers, who] of credentials) {
      const res = await app.inject({
        method: route.method,
        url: route.url,
        headers,
        payload: route.payload,
      })
      const name = `${route.method} ${route.url} with ${label}`
      if (allowed(route.role, who)) {
        // Health answers 503 here (no Redis in this test): what matters is that it was let in.
        t.notOk([401, 403].includes(res.statusCode), `${name} → ${res.statusCode}`)
      } else if (who === 'none') {
        t.equal(res.statusCode, 401, name)
        t.equal(res.json().error, 'unauthorized')
        t.match(String(res.headers['www-authenticate']), /Bearer realm="confluence-bot"/)
      } else {
        t.equal(res.statusCode, 403, name)
        t.same(res.json(), {
          error: 'forbidden',
          message: 'This operation needs an admin API key',
          statusCode: 403,
        })
      }
    }
  }
})

t.test('a rejected request never reaches Ollama', async (t) => {
  const ollama = await standIn(t)
  const app = await buildTestApp(t, { ...keys, OLLAMA_URL: ollama.url })
  await app.inject({ method: 'POST', url: '/api/generate', payload: { prompt: 'hi' } })
  t.equal(ollama.requests.length, 0)
})

t.test('with no keys configured every route is open (local use)', async (t) => {
  const ollama = await standIn(t, { pullTickMs: 1 })
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  for (const route of routes) {
    const res = await app.inject({ method: route.method, url: route.url, payload: route.payload })
    t.notOk([401, 403].includes(res.statusCode), `${route.method} ${route.url} → ${res.statusCode}`)
  }
  const config = await app.inject({ method: 'GET', url: '/admin/config' })
  t.match(config.json(), { auth: { enabled: false, reader_keys: 0, admin_keys: 0 } })
})

t.test('the admin config view shows settings but never a key', async (t) => {
  const app = await buildTestApp(t, keys)
  const res = await app.inject({ method: 'GET', url: '/admin/config', headers: bearer(ADMIN_KEY) })
  t.equal(res.statusCode, 200)
  t.match(res.json(), {
    auth: { enabled: true, reader_keys: 1, admin_keys: 1 },
    chat_model: 'llama3.2',
  })
  t.notMatch(res.body, READER_KEY)
  t.notMatch(res.body, ADMIN_KEY)
})

import t from 'tap'
import { ADMIN_KEY, bearer, buildTestApp, READER_KEY } from '../helpers/api.ts'
import { standIn } from '../helpers/ollama.ts'

// Two keys per role: every configured key must work, not only the first or the last.
const READER_KEY_2 = 'second-reader-key-0123456789'
const ADMIN_KEY_2 = 'second-admin-key-0123456789'
const keys = {
  API_KEYS: `${READER_KEY},${READER_KEY_2}`,
  ADMIN_API_KEYS: `${ADMIN_KEY}, ${ADMIN_KEY_2}`,
}
const basic = (password: string) => ({
  authorization: `Basic ${Buffer.from(`operator:${password}`).toString('base64')}`,
})

type Case = {
  method: 'GET' | 'POST'
  url: string
  payload?: object
  role: 'open' | 'reader' | 'admin'
  /** A page a browser opens: the key may come as a Basic password. */
  browser?: boolean
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
  { method: 'GET', url: '/admin/queues', role: 'admin', browser: true },
]

type Who = 'none' | 'reader' | 'admin'
// [label, headers, who it is on an API route, who it is on a browser page]
const credentials: Array<[string, Record<string, string>, Who, Who?]> = [
  ['no key', {}, 'none'],
  ['an unknown key', bearer('not-a-configured-key-000'), 'none'],
  ['a malformed header', { authorization: `Token ${READER_KEY}` }, 'none'],
  ['a reader key', bearer(READER_KEY), 'reader'],
  ['the second reader key', bearer(READER_KEY_2), 'reader'],
  ['an admin key', bearer(ADMIN_KEY), 'admin'],
  ['the second admin key', bearer(ADMIN_KEY_2), 'admin'],
  // A browser's cached Basic credentials count only on the pages a browser opens.
  ['an admin key over Basic', basic(ADMIN_KEY), 'none', 'admin'],
  ['the second admin key over Basic', basic(ADMIN_KEY_2), 'none', 'admin'],
  ['a reader key over Basic', basic(READER_KEY), 'none', 'reader'],
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

const allowed = (role: Case['role'], who: Who) =>
  role === 'open' || (role === 'reader' && who !== 'none') || who === 'admin'

t.test('the auth matrix: open, reader and admin routes against every kind of key', async (t) => {
  const ollama = await standIn(t, { pullTickMs: 1 })
  const app = await buildTestApp(t, { ...keys, OLLAMA_URL: ollama.url })
  for (const route of routes) {
    for (const [label, headers, onApi, onPage] of credentials) {
      const who = route.browser ? (onPage ?? onApi) : onApi
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
        t.equal(
          res.headers['www-authenticate'],
          route.browser
            ? 'Basic realm="confluence-bot", charset="UTF-8"'
            : 'Bearer realm="confluence-bot"',
        )
        t.match(res.json().message, route.browser ? /admin API key as the password/ : /Bearer/)
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
    auth: { enabled: true, reader_keys: 2, admin_keys: 2 },
    chat_model: 'llama3.2',
  })
  t.notMatch(res.body, READER_KEY)
  t.notMatch(res.body, ADMIN_KEY)
  t.notMatch(res.body, ADMIN_KEY_2)
})

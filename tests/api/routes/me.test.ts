import t from 'tap'
import { ADMIN_KEY, bearer, buildTestApp, listenTestApp, READER_KEY } from '../../helpers/api.ts'
import { ENG_KEY } from '../../helpers/grounded.ts'

// GET /api/me: what the caller's key may do (the chat page reads it to know what to show), and
// never the key itself.

const keys = { API_KEYS: `${READER_KEY},${ENG_KEY}:ENG+OPS`, ADMIN_API_KEYS: ADMIN_KEY }

t.test('with auth off every caller is an admin of every space', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/api/me' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { role: 'admin', spaces: null, auth: false })
})

t.test('over a real socket: each key its role and spaces, no key a 401', async (t) => {
  const { url } = await listenTestApp(t, keys)
  const me = async (headers: Record<string, string> = {}) => {
    const res = await fetch(`${url}/api/me`, { headers })
    return { status: res.status, text: await res.text(), headers: res.headers }
  }
  const cases = [
    [READER_KEY, { role: 'reader', spaces: null, auth: true }],
    [ENG_KEY, { role: 'reader', spaces: ['ENG', 'OPS'], auth: true }],
    [ADMIN_KEY, { role: 'admin', spaces: null, auth: true }],
  ] as const
  for (const [key, expected] of cases) {
    const res = await me(bearer(key))
    t.equal(res.status, 200)
    t.same(JSON.parse(res.text), expected, expected.role)
    t.notOk(res.text.includes(key), 'the key is never echoed')
  }
  for (const headers of [{}, bearer('not-a-key-0123456789')]) {
    const res = await me(headers)
    t.equal(res.status, 401)
    t.match(JSON.parse(res.text), { error: 'unauthorized', statusCode: 401 })
    t.match(res.headers.get('www-authenticate'), /^Bearer/)
  }
  // A page of another site is refused before the key is looked at (the request guard).
  const foreign = await me({ ...bearer(READER_KEY), origin: 'https://evil.example' })
  t.equal(foreign.status, 403)
  t.match(JSON.parse(foreign.text), { error: 'origin_not_allowed' })
})

t.test('/docs describes /api/me and /api/spaces', async (t) => {
  const app = await buildTestApp(t)
  const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
  const keysTag = doc.tags.find((tag: { name: string }) => tag.name === 'keys')
  t.match(keysTag, { description: /API key/ }, 'the keys tag is described')
  const me = doc.paths['/api/me'].get
  t.same(me.tags, ['keys'])
  t.match(me.summary, /your API key/)
  t.ok(me.responses['200'] && me.responses['401'] && me.responses['403'])
  const spaces = doc.paths['/api/spaces'].get
  t.same(spaces.tags, ['search'])
  t.ok(spaces.responses['200'] && spaces.responses['401'] && spaces.responses['503'])
})

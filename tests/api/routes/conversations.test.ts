import { createHash } from 'node:crypto'
import t from 'tap'
import type { StoredSource } from '../../../services/api/src/plugins/app/conversations.ts'
import { ADMIN_KEY, bearer, listenTestApp, READER_KEY } from '../../helpers/api.ts'
import { startRedis } from '../../helpers/redis.ts'

// GET/DELETE /api/conversations over real HTTP: each key sees only its own, they outlive the
// api process that stored them, and ids are checked before Redis is asked.

const ENG_KEY = 'k3y-for-eng-team-0001'
const ownerOf = (key: string) => createHash('sha256').update(key).digest('hex').slice(0, 16)

// Cast: the Source schema grows with grounded chat; the store keeps whatever it is given.
const source = {
  n: 1,
  title: 'Deploying the agent',
  url: 'https://wiki.example/pages/42#install',
  space: 'ENG',
  updated_at: '2026-01-01T00:00:00.000Z',
  score: 0.83,
  snippet: 'Run the installer…',
  cited: true,
  breadcrumb: 'Home > Agent',
  heading_path: 'Install',
  page_id: '42',
  chunk_id: '42:0',
} as StoredSource

type Json = Record<string, unknown>

async function call(url: string, key: string | undefined, method = 'GET') {
  const res = await fetch(url, { method, headers: key ? bearer(key) : {} })
  const text = await res.text()
  return { status: res.status, text, json: (text ? JSON.parse(text) : undefined) as Json }
}

t.test('conversations over HTTP', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const env = {
    REDIS_URL: redis.url,
    API_KEYS: `${READER_KEY},${ENG_KEY}:ENG`,
    ADMIN_API_KEYS: ADMIN_KEY,
  }
  const first = await listenTestApp(t, env)
  const store = first.app.conversations
  /** An append that writes (the conversation was never deleted). */
  const append = async (...args: Parameters<typeof store.append>) =>
    (await store.append(...args)) as { id: string }
  const mine = await append(ownerOf(READER_KEY), undefined, [
    { role: 'user', content: 'How do I deploy the agent?' },
    { role: 'assistant', content: 'Run the installer [1].', sources: [source] },
  ])
  const older = await append(ownerOf(READER_KEY), undefined, [
    { role: 'user', content: 'Older question' },
  ])
  await new Promise((r) => setTimeout(r, 5))
  await append(ownerOf(READER_KEY), mine.id, [{ role: 'user', content: 'And on DC?' }])
  const theirs = await append(ownerOf(ENG_KEY), undefined, [
    { role: 'user', content: 'An ENG question' },
  ])

  t.test('the list holds the caller’s own, newest first', async (t) => {
    const res = await call(`${first.url}/api/conversations`, READER_KEY)
    t.equal(res.status, 200)
    const list = res.json.conversations as Json[]
    t.same(
      list.map((c) => [c.id, c.title, c.message_count]),
      [
        [mine.id, 'How do I deploy the agent?', 3],
        [older.id, 'Older question', 1],
      ],
    )
    t.match(list[0], { created_at: /^\d{4}-\d\d-\d\dT/, updated_at: /^\d{4}-\d\d-\d\dT/ })
    const limited = await call(`${first.url}/api/conversations?limit=1`, READER_KEY)
    t.same(
      (limited.json.conversations as Json[]).map((c) => c.id),
      [mine.id],
    )

    const other = await call(`${first.url}/api/conversations`, ENG_KEY)
    t.same(
      (other.json.conversations as Json[]).map((c) => c.id),
      [theirs.id],
    )
    const admin = await call(`${first.url}/api/conversations`, ADMIN_KEY)
    t.same(admin.json, { conversations: [] }, 'an admin key owns its own, not everyone’s')
  })

  t.test('one conversation with its messages and the sources an answer cited', async (t) => {
    const res = await call(`${first.url}/api/conversations/${mine.id}`, READER_KEY)
    t.equal(res.status, 200)
    t.match(res.json, {
      id: mine.id,
      title: 'How do I deploy the agent?',
      messages: [
        { role: 'user', content: 'How do I deploy the agent?' },
        {
          role: 'assistant',
          content: 'Run the installer [1].',
          // As the Source schema serializes it (whatever fields it adds).
          sources: [{ title: source.title, url: source.url, space: 'ENG', score: 0.83 }],
        },
        { role: 'user', content: 'And on DC?' },
      ],
    })
    const messages = res.json.messages as Json[]
    t.notOk('sources' in (messages[0] as Json))
    for (const m of messages) t.match(m.created_at, /^\d{4}-\d\d-\d\dT/)
  })

  t.test('another key’s conversation is 404, like an unknown one, and stays', async (t) => {
    for (const method of ['GET', 'DELETE']) {
      const res = await call(`${first.url}/api/conversations/${theirs.id}`, READER_KEY, method)
      t.equal(res.status, 404, method)
      t.match(res.json, {
        error: 'conversation_not_found',
        statusCode: 404,
        message: /conversation/,
      })
    }
    const unknown = await call(`${first.url}/api/conversations/conv_${'A'.repeat(22)}`, ENG_KEY)
    t.equal(unknown.status, 404)
    t.equal((await call(`${first.url}/api/conversations/${theirs.id}`, ENG_KEY)).status, 200)
  })

  t.test('a malformed id is a 400 that names the parameter', async (t) => {
    for (const id of ['nope', `conv_${'a'.repeat(23)}`, 'conv_%2E%2E%2Fsecret-key-0000000']) {
      for (const method of ['GET', 'DELETE']) {
        const res = await call(`${first.url}/api/conversations/${id}`, READER_KEY, method)
        t.equal(res.status, 400, `${method} ${id}`)
        t.match(res.json, { error: 'validation_failed', message: /id/ })
      }
    }
    const res = await call(`${first.url}/api/conversations?limit=0`, READER_KEY)
    t.equal(res.status, 400)
  })

  t.test('a key is needed', async (t) => {
    for (const [method, path] of [
      ['GET', '/api/conversations'],
      ['GET', `/api/conversations/${mine.id}`],
      ['DELETE', `/api/conversations/${mine.id}`],
    ] as const) {
      t.equal((await call(`${first.url}${path}`, undefined, method)).status, 401)
      t.equal((await call(`${first.url}${path}`, 'not-a-configured-key-000', method)).status, 401)
    }
  })

  t.test('another api process on the same Redis reads them, and deletes them', async (t) => {
    await first.app.close()
    const second = await listenTestApp(t, env)
    const res = await call(`${second.url}/api/conversations/${mine.id}`, READER_KEY)
    t.equal(res.status, 200)
    t.equal((res.json.messages as Json[]).length, 3)

    const del = await call(`${second.url}/api/conversations/${older.id}`, READER_KEY, 'DELETE')
    t.equal(del.status, 204)
    t.equal(del.text, '', 'no body')
    t.equal((await call(`${second.url}/api/conversations/${older.id}`, READER_KEY)).status, 404)
    const again = await call(`${second.url}/api/conversations/${older.id}`, READER_KEY, 'DELETE')
    t.equal(again.status, 404)
    const list = await call(`${second.url}/api/conversations`, READER_KEY)
    t.same(
      (list.json.conversations as Json[]).map((c) => c.id),
      [mine.id],
    )
  })
})

t.test('with auth off, conversations belong to "local"', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const { app, url } = await listenTestApp(t, { REDIS_URL: redis.url })
  const { id } = (await app.conversations.append('local', undefined, [
    { role: 'user', content: 'no keys here' },
  ])) as { id: string }
  const list = await call(`${url}/api/conversations`, undefined)
  t.equal(list.status, 200)
  t.same(
    (list.json.conversations as Json[]).map((c) => c.id),
    [id],
  )
  t.equal((await call(`${url}/api/conversations/${id}`, undefined)).status, 200)
  t.equal((await call(`${url}/api/conversations/${id}`, undefined, 'DELETE')).status, 204)
  t.same((await call(`${url}/api/conversations`, undefined)).json, { conversations: [] })
})

t.test('Redis down: 503 in the API’s error shape', async (t) => {
  // REDIS_URL of the test config points at a port nothing listens on.
  const { url } = await listenTestApp(t, { API_KEYS: READER_KEY })
  for (const [method, path] of [
    ['GET', '/api/conversations'],
    ['GET', `/api/conversations/conv_${'A'.repeat(22)}`],
    ['DELETE', `/api/conversations/conv_${'A'.repeat(22)}`],
  ] as const) {
    const res = await call(`${url}${path}`, READER_KEY, method)
    t.equal(res.status, 503, `${method} ${path}`)
    t.match(res.json, { error: 'redis_unavailable', statusCode: 503 })
  }
})

import { listSources } from '@confluence-bot/shared'
import { Redis } from 'ioredis'
import t from 'tap'
import { ADMIN_KEY, listenTestApp, READER_KEY } from '../../helpers/api.ts'
import { startRedis } from '../../helpers/redis.ts'
import { jsonHeaders, wire } from '../../helpers/wire.ts'

// POST /api/sources refuses a cql that could reach outside the parentheses the worker wraps it in
// (`space = "DOC" AND (cql)`): registered as is, `title ~ "Page 1") OR (space = "ENG"` indexed
// every page of ENG under a DOC source. Over a real socket: a 400 naming `body/cql`, nothing stored.

t.test('a cql whose parentheses do not balance is refused when registered', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const { url } = await listenTestApp(t, {
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    REDIS_URL: redis.url,
    CONFLUENCE_ALLOWED_HOSTS: 'acme.atlassian.net',
  })
  const client = new Redis(redis.url)
  t.teardown(() => client.quit())
  const register = (name: string, cql: string) =>
    wire(`${url}/api/sources`, {
      method: 'POST',
      headers: jsonHeaders(ADMIN_KEY),
      body: JSON.stringify({
        name,
        kind: 'cloud',
        base_url: 'https://acme.atlassian.net/wiki',
        spaces: ['DOC'],
        cql,
      }),
    })

  const refused: Array<[string, RegExp]> = [
    ['title ~ "Page 1") OR (space = "ENG"', /^body\/cql has a "\)" at position 17/],
    ['(label = "a" OR label = "b"', /^body\/cql leaves 1 "\(" unclosed/],
    ['title ~ "Page 1', /^body\/cql has a string opened by " at position 9 that never closes/],
  ]
  for (const [cql, message] of refused) {
    const answer = await register(`refused ${cql}`, cql)
    t.match(
      answer,
      {
        status: 400,
        type: /^application\/json/,
        json: { error: 'validation_failed', statusCode: 400, message },
      },
      cql,
    )
  }
  t.same(await listSources(client), [], 'nothing was stored')

  const fine = 'title ~ "Page 1)" OR (label = "x" AND title ~ \'(draft\')'
  const created = await register('fine', fine)
  t.equal(created.status, 201, created.text)
  t.equal((created.json as { cql: string }).cql, fine, 'parentheses in strings are text')
})

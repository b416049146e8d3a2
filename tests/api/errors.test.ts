import t from 'tap'
import { buildTestApp } from '../helpers/api.ts'
import { standIn } from '../helpers/ollama.ts'

t.test('a body over BODY_LIMIT is a 413 naming the limit', async (t) => {
  const ollama = await standIn(t)
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url, BODY_LIMIT: '2048' })
  const res = await app.inject({
    method: 'POST',
    url: '/api/generate',
    payload: { prompt: 'x'.repeat(4096) },
  })
  t.equal(res.statusCode, 413)
  t.same(res.json(), {
    error: 'payload_too_large',
    message: 'Request body is larger than BODY_LIMIT (2048 bytes)',
    statusCode: 413,
  })
  t.equal(ollama.requests.length, 0)
})

t.test('a JSON body is read whatever its Content-Type, as Ollama does', async (t) => {
  const ollama = await standIn(t)
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  for (const type of ['application/x-www-form-urlencoded', 'text/plain', 'application/json']) {
    const res = await app.inject({
      method: 'POST',
      url: '/api/generate',
      headers: { 'content-type': type },
      payload: '{"prompt":"hi"}',
    })
    t.equal(res.statusCode, 200, type)
  }
})

t.test('missing and malformed bodies get a clear 400', async (t) => {
  const app = await buildTestApp(t)
  for (const type of ['application/json', 'text/plain', undefined]) {
    const res = await app.inject({
      method: 'POST',
      url: '/api/generate',
      headers: type ? { 'content-type': type } : {},
    })
    t.equal(res.statusCode, 400, String(type))
    t.same(res.json(), {
      error: 'missing_request_body',
      message: 'missing request body',
      statusCode: 400,
    })
  }
  const broken = await app.inject({
    method: 'POST',
    url: '/api/generate',
    headers: { 'content-type': 'text/plain' },
    payload: '{"prompt":',
  })
  t.equal(broken.statusCode, 400)
  t.match(broken.json(), { error: 'validation_failed', message: /^Body is not JSON/ })
  const brokenJson = await app.inject({
    method: 'POST',
    url: '/api/generate',
    headers: { 'content-type': 'application/json' },
    payload: '{"prompt":',
  })
  t.equal(brokenJson.statusCode, 400)
  t.equal(brokenJson.json().error, 'validation_failed')
  t.notMatch(brokenJson.body, /at .*\.js:\d+/, 'no stack trace')
})

t.test('unknown routes are a JSON 404', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/api/nothing?x=1' })
  t.equal(res.statusCode, 404)
  t.same(res.json(), {
    error: 'not_found',
    message: 'Route GET /api/nothing not found',
    statusCode: 404,
  })
})

t.test('an unexpected failure is a generic 500 with the request id, never a stack', async (t) => {
  const app = await buildTestApp(t)
  // A route that fails the way a bug would: registered on the built app for this test only.
  const fresh = (await import('@confluence-bot/api')).buildApp({ config: app.config })
  fresh.get('/boom', async () => {
    throw new TypeError('secret internal detail')
  })
  t.teardown(() => fresh.close())
  const res = await fresh.inject({
    method: 'GET',
    url: '/boom',
    headers: { 'x-request-id': 'req-42' },
  })
  t.equal(res.statusCode, 500)
  t.same(res.json(), {
    error: 'internal_error',
    message: 'Internal error (request id req-42)',
    statusCode: 500,
  })
  t.equal(res.headers['x-request-id'], 'req-42')
  t.notMatch(res.body, /secret internal detail|TypeError/)
})

t.test('request ids: a sane caller id is kept, anything else replaced', async (t) => {
  const app = await buildTestApp(t)
  const kept = await app.inject({
    method: 'GET',
    url: '/api/health/live',
    headers: { 'x-request-id': 'abc-123' },
  })
  t.equal(kept.headers['x-request-id'], 'abc-123')
  const replaced = await app.inject({
    method: 'GET',
    url: '/api/health/live',
    headers: { 'x-request-id': 'bad id\twith spaces' },
  })
  t.match(replaced.headers['x-request-id'], /^[0-9a-f-]{36}$/)
})

t.test('query strings are coerced to their schema types; bodies are not', async (t) => {
  const app = (await import('@confluence-bot/api')).buildApp({
    config: (await buildTestApp(t)).config,
  })
  t.teardown(() => app.close())
  app.post(
    '/typed',
    {
      schema: {
        querystring: {
          type: 'object',
          properties: { limit: { type: 'integer' } },
        },
        body: { type: 'object', properties: { flag: { type: 'boolean' } } },
      },
    },
    async (request) => ({ query: request.query, body: request.body }),
  )
  const ok = await app.inject({ method: 'POST', url: '/typed?limit=5', payload: { flag: true } })
  t.same(ok.json(), { query: { limit: 5 }, body: { flag: true } })
  const strict = await app.inject({ method: 'POST', url: '/typed', payload: { flag: 'true' } })
  t.equal(strict.statusCode, 400)
  t.match(strict.json().message, /body\/flag must be boolean/)
})

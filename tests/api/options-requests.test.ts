import t from 'tap'
import { ADMIN_KEY, listenTestApp } from '../helpers/api.ts'
import type { Json } from '../helpers/grounded.ts'
import { wire } from '../helpers/wire.ts'

// An OPTIONS request that is no CORS preflight, on /v1 or /ollama (found by
// tests/security/routes-fuzz.test.ts: the CORS plugin's catch-all OPTIONS route answered it in
// the API's shape): each scope answers it as it answers any other method it does not serve,
// while a preflight from an allowed origin is still answered by CORS. Over a real socket.

const ORIGIN = 'https://pages.example'
const admin = { authorization: `Bearer ${ADMIN_KEY}` }
const preflight = { origin: ORIGIN, 'access-control-request-method': 'POST' }

t.test('OPTIONS on /v1 and /ollama, with and without a preflight', async (t) => {
  const { url } = await listenTestApp(t, { ADMIN_API_KEYS: ADMIN_KEY, API_ALLOWED_ORIGINS: ORIGIN })
  for (const path of ['/v1', '/v1/models', '/v1/chat/completions', '/v1/nothing']) {
    const res = await wire(`${url}${path}`, { method: 'OPTIONS', headers: admin })
    t.equal(res.status, 404, path)
    t.match(
      (res.json as Json).error,
      {
        message: `Route OPTIONS ${path} not found (the OpenAI-compatible API has`,
        code: 'not_found',
      },
      res.text,
    )
  }
  for (const path of ['/ollama', '/ollama/', '/ollama/api/tags', '/ollama/api/chat']) {
    const res = await wire(`${url}${path}`, { method: 'OPTIONS', headers: admin })
    t.equal(res.status, 405, path)
    t.equal(res.text, '405 method not allowed')
  }
  const unknown = await wire(`${url}/ollama/nothing`, { method: 'OPTIONS', headers: admin })
  t.equal(unknown.status, 404)
  t.equal(unknown.text, '404 page not found')
  // Without a key, the scope's key check answers first, in its own shape.
  const keyless = await wire(`${url}/v1/models`, { method: 'OPTIONS' })
  t.equal(keyless.status, 401)
  t.match((keyless.json as Json).error, { code: 'invalid_api_key' })
  // A browser's preflight never carries the key: CORS answers it before any key check.
  for (const path of ['/v1/chat/completions', '/ollama/api/chat']) {
    const res = await wire(`${url}${path}`, { method: 'OPTIONS', headers: preflight })
    t.equal(res.status, 204, `${path} preflight`)
  }
})

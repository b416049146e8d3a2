import t from 'tap'
import { request } from 'undici'
import { ADMIN_KEY, listenTestApp } from '../helpers/api.ts'
import type { Json } from '../helpers/grounded.ts'
import { wire } from '../helpers/wire.ts'

// A path the router cannot read (found by tests/security/routes-fuzz.test.ts: GET
// /v1/models/%ff answered in the API's shape, which an OpenAI SDK cannot read) is a 400 in the
// error shape of the surface its path names, over a real socket.

const long = 'x'.repeat(300)
const headers = { authorization: `Bearer ${ADMIN_KEY}` }

t.test('a path the router refuses is answered in its surface error shape', async (t) => {
  const { url } = await listenTestApp(t, { ADMIN_API_KEYS: ADMIN_KEY })
  const cases: Array<[string, RegExp, (json: Json) => unknown]> = [
    ['/api/jobs/%ff', /%-escape/, (json) => json],
    [`/api/jobs/${long}`, /too long/, (json) => json],
    ['/v1/models/%ff', /%-escape/, (json) => json.error],
    [`/v1/models/${long}`, /too long/, (json) => json.error],
    ['/ollama/api/t%ffags', /%-escape/, (json) => ({ message: json.error })],
  ]
  for (const [path, message, part] of cases) {
    const res = await wire(`${url}${path}`, { headers })
    t.equal(res.status, 400, path.slice(0, 30))
    t.match(res.type, /^application\/json/)
    t.match(part(res.json as Json), { message }, res.text)
  }
  const v1 = await wire(`${url}/v1/models/%ff`, { headers })
  t.same(v1.json, {
    error: {
      message: 'The URL path is not valid (a %-escape that is not UTF-8?)',
      type: 'invalid_request_error',
      param: null,
      code: 'validation_failed',
    },
  })
  const api = await wire(`${url}/api/jobs/%ff`, { headers })
  t.same(api.json, {
    error: 'validation_failed',
    message: 'The URL path is not valid (a %-escape that is not UTF-8?)',
    statusCode: 400,
  })
  for (const path of ['/ollama/api/t%ffags', '/ollama/%ff']) {
    const res = await wire(`${url}${path}`, { headers })
    t.same(res.json, { error: 'The URL path is not valid (a %-escape that is not UTF-8?)' }, path)
  }
})

t.test('a path the router refuses carries the request id and the security headers', async (t) => {
  const { url } = await listenTestApp(t, { ADMIN_API_KEYS: ADMIN_KEY })
  const res = await request(`${url}/api/jobs/%ff`, {
    headers: { ...headers, 'x-request-id': 'trace-me-1' },
  })
  await res.body.dump()
  t.equal(res.statusCode, 400)
  t.equal(res.headers['x-request-id'], 'trace-me-1', 'the request id, as for every answer')
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  t.equal(res.headers['x-frame-options'], 'DENY')
  t.equal(res.headers['referrer-policy'], 'no-referrer')
  t.match(res.headers['content-security-policy'], /default-src 'none'/)
  const routed = await request(`${url}/api/nothing-here`, { headers })
  await routed.body.dump()
  t.equal(routed.statusCode, 404)
  for (const name of ['content-security-policy', 'x-frame-options', 'referrer-policy']) {
    t.equal(res.headers[name], routed.headers[name], `${name}: as on every other answer`)
  }
})

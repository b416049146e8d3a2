import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import {
  createHttp,
  errorDetail,
  type HttpOptions,
  mapLimit,
  parseRetryAfter,
} from '../../../services/worker/src/confluence/http.ts'
import { createLimiter, type Limiter } from '../../../services/worker/src/confluence/limiter.ts'
import { captureLog, failure } from '../../helpers/capture.ts'
import {
  type ConfluenceStandIn,
  type ConfluenceStandInOptions,
  type StandInPage,
  startConfluenceStandIn,
} from '../../helpers/confluence-stand-in.ts'
import { startRedis } from '../../helpers/redis.ts'

// The retry policy of reference §7 against the stand-in's scripted faults. Backoff is shortened
// (base 5 ms, cap 20 ms); the Retry-After wait is real and checked as a lower bound only.

const USER = 'bot@example.com'
const TOKEN = 'tok-5ecret-value-123'
const BASIC = Buffer.from(`${USER}:${TOKEN}`).toString('base64')
const FAST = { baseMs: 5, capMs: 20 }
const free: Limiter = { acquire: async () => {}, pauseFor: async () => {} }

const pages: StandInPage[] = [
  { id: '1001', title: 'Home', spaceKey: 'ENG', version: 3, storage: '<p>home</p>' },
]

type Json = Record<string, unknown>

async function standIn(t: Test, options: Partial<ConfluenceStandInOptions> = {}) {
  const s = await startConfluenceStandIn({
    pages: structuredClone(pages),
    auth: { type: 'basic', username: USER, token: TOKEN },
    ...options,
  })
  t.teardown(() => s.close())
  return s
}

function client(t: Test, s: ConfluenceStandIn, options: Partial<HttpOptions> = {}) {
  const http = createHttp({
    baseUrl: s.baseUrl,
    auth: { type: 'basic', username: USER, token: TOKEN },
    timeoutMs: 5_000,
    allowedHosts: '127.0.0.1',
    limiter: free,
    retry: FAST,
    ...options,
  })
  t.teardown(() => http.close())
  return http
}

const pageUrl = (s: ConfluenceStandIn) => `${s.baseUrl}/api/v2/pages/1001`

function noSecrets(t: Test, text: string, what: string) {
  t.notMatch(text, TOKEN, `${what}: no token`)
  t.notMatch(text, BASIC, `${what}: no Authorization value`)
}

t.test('success: JSON, Basic auth, no trailing slash trouble', async (t) => {
  const s = await standIn(t)
  const http = client(t, s, { baseUrl: `${s.baseUrl}/` })
  t.equal(http.base, s.baseUrl)
  t.equal(http.host, new URL(s.url).host)
  const page = await http.getJson<Json>(pageUrl(s))
  t.equal(page.id, '1001')
  t.equal(s.requests[0]?.headers.authorization, `Basic ${BASIC}`)
  t.equal(s.requests[0]?.headers.accept, 'application/json')
})

t.test('bearer and anonymous sources', async (t) => {
  const s = await standIn(t, { auth: { type: 'bearer', token: 'pat-1' } })
  await client(t, s, { auth: { type: 'bearer', token: 'pat-1' } }).getJson(pageUrl(s))
  t.equal(s.requests[0]?.headers.authorization, 'Bearer pat-1')
  s.options.auth = undefined
  // No timeout configured and no signal: the request still goes out and is answered.
  await client(t, s, { auth: undefined, timeoutMs: 0 }).getJson(pageUrl(s))
  t.notOk('authorization' in (s.requests[1]?.headers ?? {}))
  const err = await failure(client(t, s, { auth: undefined }).getJson(`${s.baseUrl}/api/v2/nope`))
  t.equal(err.code, 'not_found')
})

t.test('401 fails at once: one request, fatal, the token never in the message', async (t) => {
  const s = await standIn(t)
  const { log, lines } = captureLog()
  const http = client(t, s, { auth: { type: 'basic', username: USER, token: 'wrong-token' }, log })
  const err = await failure(http.getJson(pageUrl(s)))
  t.equal(err.code, 'auth')
  t.equal(err.status, 401)
  t.ok(err.fatal)
  t.equal(s.requests.length, 1, 'never retried')
  t.match(err.message, `Confluence at ${new URL(s.url).host} refused the credentials (401:`)
  t.match(err.message, "check the source's username/token")
  t.notMatch(err.message, 'wrong-token')
  t.equal(lines.length, 1)
  t.notMatch(lines.join('\n'), 'wrong-token')
  t.notMatch(lines.join('\n'), /authorization/i)
})

t.test('401 from DC is HTML: not parsed, and a CAPTCHA lock-out is named', async (t) => {
  const s = await standIn(t, { deployment: 'dc', contextPath: '/confluence' })
  const http = client(t, s, { auth: { type: 'basic', username: USER, token: 'nope' } })
  const url = `${s.baseUrl}/rest/api/content/1001`
  const err = await failure(http.getJson(url))
  t.equal(err.code, 'auth')
  t.match(err.message, 'refused the credentials (401)')
  t.notMatch(err.message, /html|Tomcat/i)
  s.options.faults.push({
    status: 401,
    headers: { 'content-type': 'text/html', 'x-authentication-denied-reason': 'CAPTCHA_CHALLENGE' },
    body: '<html></html>',
  })
  const captcha = await failure(client(t, s).getJson(url))
  t.match(captcha.message, 'log in once through the browser')
  t.equal(s.requests.length, 2)
})

t.test('403 is retried twice, then fatal with the server message', async (t) => {
  const s = await standIn(t, { forbidden: true })
  const err = await failure(client(t, s).getJson(pageUrl(s)))
  t.equal(err.code, 'forbidden')
  t.ok(err.fatal)
  t.equal(s.requests.length, 3, 'one try and two retries')
  t.match(err.message, 'Basic Authentication has been disabled on this instance.')
  s.options.forbidden = false
  s.options.faults.push({ status: 403, body: '{"message":"flaky"}' })
  t.equal((await client(t, s).getJson<Json>(pageUrl(s))).id, '1001', 'a single 403 passes')
  t.equal(s.requests.length, 5)
})

t.test('503, 502, 504, resets and cut-off bodies are retried until they pass', async (t) => {
  const s = await standIn(t, { failNext: 2 })
  const http = client(t, s)
  t.equal((await http.getJson<Json>(pageUrl(s))).id, '1001')
  t.equal(s.requests.length, 3)
  s.options.faults.push(
    { status: 502 },
    { status: 504, headers: { 'content-type': 'text/html' }, body: '<h1>Gateway Timeout</h1>' },
    { kind: 'reset' },
  )
  t.equal((await http.getJson<Json>(pageUrl(s))).id, '1001')
  t.equal(s.requests.length, 7)
  s.options.faults.push(
    { kind: 'truncate' },
    { status: 429 }, // no Retry-After: the backoff alone
  )
  t.equal((await http.getJson<Json>(pageUrl(s))).id, '1001')
  t.equal(s.requests.length, 10)
})

t.test('a 500 is retried once; exhausted retries are not fatal', async (t) => {
  const s = await standIn(t)
  s.options.faults.push({ status: 500, times: 2, body: '{"message":"NullPointerException"}' })
  const err = await failure(client(t, s).getJson(pageUrl(s)))
  t.equal(err.code, 'unavailable')
  t.equal(err.status, 500)
  t.notOk(err.fatal)
  t.match(err.message, 'NullPointerException')
  t.match(err.message, 'after 2 attempts')
  t.equal(s.requests.length, 2)

  s.options.faults.push({ status: 502, times: 3 })
  const busy = await failure(client(t, s, { retry: { ...FAST, attempts: 3 } }).getJson(pageUrl(s)))
  t.equal(busy.code, 'unavailable')
  t.match(busy.message, 'after 3 attempts')
  t.equal(s.requests.length, 5)
})

t.test('timeouts: a hung request is abandoned and retried', async (t) => {
  const s = await standIn(t)
  s.options.faults.push({ kind: 'hang' })
  const http = client(t, s, { timeoutMs: 300 })
  t.equal((await http.getJson<Json>(pageUrl(s))).id, '1001')
  t.equal(s.requests.length, 2)
  s.options.faults.push({ kind: 'hang', times: 2 })
  const err = await failure(
    client(t, s, { timeoutMs: 200, retry: { ...FAST, attempts: 2 } }).getJson(pageUrl(s)),
  )
  t.equal(err.code, 'timeout')
  t.notOk(err.fatal)
  t.match(err.message, 'within 200 ms: raise CONFLUENCE_TIMEOUT_MS')
})

t.test("the caller's signal stops a request and its retries", async (t) => {
  const s = await standIn(t)
  s.options.faults.push({ kind: 'hang' })
  const controller = new AbortController()
  const pending = client(t, s).getJson(pageUrl(s), controller.signal)
  setTimeout(() => controller.abort(new Error('shutting down')), 100)
  await t.rejects(pending, { message: 'shutting down' })
  t.equal(s.requests.length, 1)
  s.options.faults.push({ status: 502 })
  const again = new AbortController()
  const retrying = client(t, s, { retry: { baseMs: 60_000, capMs: 60_000 } }).getJson(
    pageUrl(s),
    again.signal,
  )
  setTimeout(() => again.abort(new Error('stop waiting')), 100)
  await t.rejects(retrying, { message: 'stop waiting' }, 'the backoff wait is aborted too')
})

t.test('never retried: 404, 410, 400, redirects, non-JSON', async (t) => {
  const s = await standIn(t)
  const http = client(t, s)
  const missing = await failure(http.getJson(`${s.baseUrl}/api/v2/pages/999`))
  t.equal(missing.code, 'not_found')
  t.notOk(missing.fatal)
  t.match(missing.message, '(404: Not Found)')
  const v1 = await failure(http.getJson(`${s.baseUrl}/rest/api/content/999`))
  t.match(v1.message, 'No content found with id: ContentId{id=999}')
  s.options.faults.push(
    { status: 410, body: '{"message":"This deprecated endpoint has been removed"}' },
    {
      status: 400,
      body: JSON.stringify({
        errors: [{ status: 400, code: 'X', title: 'Bad cursor.', detail: `echo ${TOKEN}` }],
      }),
    },
    { status: 302, headers: { location: 'https://sso.example.com/login?x=1' }, body: '' },
    { status: 301, headers: { location: 'http://[' }, body: '' },
    { status: 307, body: '' },
    { status: 200, headers: { 'content-type': 'text/html' }, body: '<html>login</html>' },
    { status: 405, body: 'no' },
  )
  const gone = await failure(http.getJson(pageUrl(s)))
  t.match(gone, { code: 'gone', status: 410, fatal: true })
  t.match(gone.message, 'has removed GET /wiki/api/v2/pages/1001 (410: This deprecated endpoint')
  const bad = await failure(http.getJson(pageUrl(s)))
  t.match(bad, { code: 'bad_request', status: 400, fatal: true })
  t.match(bad.message, 'Bad cursor. echo ***')
  noSecrets(t, bad.message, 'an echoed token')
  const sso = await failure(http.getJson(pageUrl(s)))
  t.match(sso, { code: 'bad_request', status: 302 })
  t.match(sso.message, 'redirected GET /wiki/api/v2/pages/1001 to sso.example.com (302)')
  const badLocation = await failure(http.getJson(pageUrl(s)))
  t.match(badLocation.message, 'redirected GET /wiki/api/v2/pages/1001 (301)')
  t.match((await failure(http.getJson(pageUrl(s)))).message, '(307)')
  const html = await failure(http.getJson(pageUrl(s)))
  t.match(html, { code: 'bad_request', status: 200 })
  t.match(html.message, 'something other than JSON')
  t.match(await failure(http.getJson(pageUrl(s))), { code: 'bad_request', status: 405 })
  t.equal(s.requests.length, 9, 'one request each')
})

t.test('links to another origin are refused before any request', async (t) => {
  const s = await standIn(t)
  const err = await failure(client(t, s).getJson('https://evil.example.com/wiki/api/v2/pages'))
  t.equal(err.code, 'bad_request')
  t.match(err.message, 'linked to another site (evil.example.com)')
  t.equal(s.requests.length, 0)
})

t.test('the base_url check runs before the first request', async (t) => {
  const s = await standIn(t)
  const http = client(t, s, { allowedHosts: '' })
  const err = await failure(http.getJson(pageUrl(s)))
  t.equal(err.code, 'config')
  t.match(err.message, 'CONFLUENCE_ALLOWED_HOSTS')
  t.equal(s.requests.length, 0)
})

t.test('network failures: refused connections are retried, unknown hosts are not', async (t) => {
  const s = await standIn(t)
  const origin = s.url
  await s.close()
  const refused = await failure(
    client(t, s, { retry: { ...FAST, attempts: 2 } }).getJson(`${origin}/wiki/api/v2/pages/1`),
  )
  t.equal(refused.code, 'network')
  t.notOk(refused.fatal)
  t.match(
    refused.message,
    /Could not reach Confluence at 127\.0\.0\.1:\d+ .*\(ECONNREFUSED\) after 2 attempts/,
  )

  const unknown = createHttp({
    baseUrl: 'http://wiki.invalid/confluence',
    timeoutMs: 5_000,
    allowedHosts: 'wiki.invalid',
    limiter: free,
    retry: { ...FAST, attempts: 2 },
  })
  t.teardown(() => unknown.close())
  const err = await failure(unknown.getJson('http://wiki.invalid/confluence/rest/api/space/X'))
  t.equal(err.code, 'network')
  t.match(err.message, 'does not resolve (ENOTFOUND)')
  t.ok(err.fatal)
})

t.test('429 with Retry-After: 2 pauses the source for at least 2 s', async (t) => {
  const redisServer = await startRedis()
  t.teardown(() => redisServer.stop())
  const redis = new Redis(redisServer.url)
  t.teardown(() => redis.quit())
  const s = await standIn(t)
  s.options.faults.push({ status: 429, headers: { 'retry-after': ['2', '30'] } })
  const { log, lines } = captureLog()
  const limiter = createLimiter(redis, 'src-429', 50)
  const http = client(t, s, { limiter, log })
  const other = client(t, s, { limiter: createLimiter(redis, 'src-429', 50) })
  const first = http.getJson<Json>(pageUrl(s))
  // Wait until the 429 went out, then start a second client on the same source.
  while (s.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  await new Promise((resolve) => setTimeout(resolve, 50))
  const second = other.getJson<Json>(pageUrl(s))
  t.equal((await first).id, '1001')
  t.equal((await second).id, '1001')
  t.equal(s.requests.length, 3)
  const limited = s.requests[0]?.at as number
  for (const request of s.requests.slice(1)) {
    t.ok(request.at - limited >= 2000, `next request ${Math.round(request.at - limited)} ms after`)
  }
  const text = lines.join('\n')
  noSecrets(t, text, 'logs')
  const warn = lines.map((line) => JSON.parse(line) as Json).find((line) => line.level === 40)
  t.match(warn, { status: 429, code: 'rate_limited', attempt: 1, msg: /retrying/ })
  t.ok((warn?.waitMs as number) >= 2000)
})

t.test('a Retry-After longer than maxWaitMs fails the request at once, retryable', async (t) => {
  const s = await standIn(t)
  const paused: number[] = []
  const limiter: Limiter = { acquire: async () => {}, pauseFor: async (ms) => void paused.push(ms) }
  const http = client(t, s, { limiter, retry: { ...FAST, maxWaitMs: 1_000 } })
  const cases: Array<[number, string, RegExp]> = [
    [429, '86400', /Retry-After: 86400 s, more than the 1 s a request waits.*lower the source's/],
    // 2^31 ms and more overflow setTimeout: never slept, never ignored.
    [
      503,
      '2147484',
      /503 and Retry-After: 2147484 s, more than the 1 s a request waits: this attempt fails and the job is retried later$/,
    ],
    [429, new Date(Date.now() + 3_600_000).toUTCString(), /Retry-After: 3\d{3} s/],
  ]
  for (const [status, retryAfter, message] of cases) {
    const before = s.requests.length
    s.options.faults.push({ status, headers: { 'retry-after': retryAfter } })
    const started = performance.now()
    const err = await failure(http.getJson(pageUrl(s)))
    t.ok(performance.now() - started < 1_000, `${status} ${retryAfter}: no wait`)
    t.match(err, { code: status === 429 ? 'rate_limited' : 'unavailable', status, fatal: false })
    t.match(err.message, message)
    t.equal(s.requests.length - before, 1, 'one request, no retry in process')
  }
  t.same(paused, [], 'the source is not paused by an answer it cannot honour')
  // Up to maxWaitMs it is sat out as before.
  s.options.faults.push({ status: 429, headers: { 'retry-after': '1' } })
  t.equal((await http.getJson<Json>(pageUrl(s))).id, '1001')
  t.same(paused, [1_000])
})

t.test('TLS: a private CA is trusted per source, never process-wide', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cnfl-tls-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  )
  const cert = readFileSync(join(dir, 'cert.pem'), 'utf8')
  const s = await standIn(t, { tls: { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert } })
  t.match(s.url, /^https:/)
  const untrusted = await failure(client(t, s).getJson(pageUrl(s)))
  t.equal(untrusted.code, 'network')
  t.ok(untrusted.fatal, 'an untrusted certificate is not retried')
  t.match(untrusted.message, /not trusted \([A-Z_]+\): give the source's tls.ca_cert/)
  t.equal(s.requests.length, 0, 'the request never reached the server')

  const trusted = client(t, s, { tls: { ca_cert: cert } })
  t.equal((await trusted.getJson<Json>(pageUrl(s))).id, '1001')
  const lax = client(t, s, { tls: { reject_unauthorized: false } })
  t.equal((await lax.getJson<Json>(pageUrl(s))).id, '1001')
  t.equal(s.requests.length, 2)
  const stillUntrusted = await failure(client(t, s).getJson(pageUrl(s)))
  t.equal(stillUntrusted.code, 'network', 'other sources are unaffected')
})

t.test('errorDetail reads v1 and v2 envelopes', async (t) => {
  const json = 'application/json;charset=UTF-8'
  t.equal(errorDetail(json, '{"statusCode":404,"message":"No content"}'), 'No content')
  t.equal(
    errorDetail(json, '{"errors":[{"title":"A","detail":"B"},{"title":"C","detail":null},5]}'),
    'A B C',
  )
  t.equal(
    errorDetail(json, '{"code":401,"message":"Unauthorized; scope does not match"}'),
    'Unauthorized; scope does not match',
  )
  t.equal(errorDetail('text/html', '<html>{"message":"x"}</html>'), '')
  t.equal(errorDetail(undefined, '{"message":"x"}'), '')
  t.equal(errorDetail(json, '{"message":'), '')
  t.equal(errorDetail(json, 'null'), '')
  t.equal(errorDetail(json, '"text"'), '')
  t.equal(errorDetail(json, '{"message":"a\\n  b"}'), 'a b')
  const long = errorDetail(json, JSON.stringify({ message: 'x'.repeat(1000) }))
  t.equal(long.length, 301)
  t.ok(long.endsWith('…'))
})

t.test('parseRetryAfter: seconds or an HTTP date', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z')
  t.equal(parseRetryAfter(undefined, now), undefined)
  t.equal(parseRetryAfter('2', now), 2000)
  t.equal(parseRetryAfter(' 1.5 ', now), 1500)
  t.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:07 GMT', now), 7000)
  t.equal(parseRetryAfter('Wed, 31 Dec 2025 23:59:00 GMT', now), 0)
  t.equal(parseRetryAfter('soon', now), undefined)
  t.ok((parseRetryAfter('0') as number) === 0)
})

t.test('mapLimit keeps order, bounds concurrency and stops on the first failure', async (t) => {
  let active = 0
  let peak = 0
  const out = await mapLimit([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
    active++
    peak = Math.max(peak, active)
    await new Promise((resolve) => setTimeout(resolve, 8 - n))
    active--
    return n * 10
  })
  t.same(out, [10, 20, 30, 40, 50, 60, 70])
  t.equal(peak, 3)
  t.same(await mapLimit([], 4, async () => 1), [])
  const seen: number[] = []
  await t.rejects(
    mapLimit([1, 2, 3, 4, 5], 1, async (n) => {
      seen.push(n)
      if (n === 2) throw new Error('boom')
      return n
    }),
    { message: 'boom' },
  )
  t.same(seen, [1, 2], 'no item starts after a failure')
})

import { createHash } from 'node:crypto'
import { Redis } from 'ioredis'
import { Ollama } from 'ollama'
import OpenAI from 'openai'
import t from 'tap'
import { ADMIN_KEY, bearer, listenTestApp, READER_KEY } from '../../helpers/api.ts'
import { standIn } from '../../helpers/ollama.ts'
import { startRedis } from '../../helpers/redis.ts'

// Per-key rate limits over real sockets, counted in a real Redis shared by two api processes'
// worth of apps: one budget per key across replicas, in each surface's error shape.

const owner = (key: string) => createHash('sha256').update(key).digest('hex').slice(0, 16)

/** What a promise rejects with (or `{}` if it resolves). */
const rejection = (promise: Promise<unknown>) =>
  promise.then(
    () => ({}),
    (err: unknown) => err,
  )

t.test('one budget per key across replicas, in every surface shape', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const ollama = await standIn(t)
  const env = {
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    REDIS_URL: redis.url,
    OLLAMA_URL: ollama.url,
    RATE_LIMIT_PER_MINUTE: '3',
  }
  const one = await listenTestApp(t, env)
  const two = await listenTestApp(t, env)
  const me = (url: string, key = READER_KEY) => fetch(`${url}/api/me`, { headers: bearer(key) })

  const remaining: string[] = []
  for (const url of [one.url, one.url, two.url]) {
    const res = await me(url)
    t.equal(res.status, 200)
    t.equal(res.headers.get('x-ratelimit-limit'), '3')
    remaining.push(res.headers.get('x-ratelimit-remaining') as string)
    await res.arrayBuffer()
  }
  t.same(remaining, ['2', '1', '0'], 'both replicas count against one budget')

  const over = await me(two.url)
  t.equal(over.status, 429)
  const wait = Number(over.headers.get('retry-after'))
  t.ok(wait > 0 && wait <= 60, `Retry-After says when (${wait} s)`)
  t.equal(over.headers.get('x-ratelimit-remaining'), '0')
  t.match(await over.json(), {
    error: 'rate_limited',
    message:
      /^Too many requests: this API key may make 3 per minute \(RATE_LIMIT_PER_MINUTE\); retry in \d+ (second|minute)s?$/,
    statusCode: 429,
  })
  t.equal((await me(one.url)).status, 429, 'on the other replica too')

  const other = await me(one.url, ADMIN_KEY)
  t.equal(other.status, 200, 'another key has its own budget')
  await other.arrayBuffer()
  for (let i = 0; i < 5; i++) {
    const probe = await fetch(`${one.url}/api/health/live`)
    t.equal(probe.status, 200, 'probes are never limited')
    t.equal(probe.headers.get('x-ratelimit-limit'), null)
    await probe.arrayBuffer()
  }
  const page = await fetch(`${one.url}/`)
  t.equal(page.status, 200, "the chat page's files are not limited")
  await page.arrayBuffer()

  // The OpenAI and Ollama SDKs see their own shapes.
  const openai = new OpenAI({ baseURL: `${one.url}/v1`, apiKey: READER_KEY, maxRetries: 0 })
  t.match(await rejection(openai.models.list()), {
    status: 429,
    error: { message: /RATE_LIMIT_PER_MINUTE/, code: 'rate_limited' },
  })
  t.equal(
    ((await rejection(openai.models.list())) as { constructor: unknown }).constructor,
    OpenAI.RateLimitError,
  )
  const client = new Ollama({ host: `${two.url}/ollama`, headers: bearer(READER_KEY) })
  t.match(await rejection(client.list()), {
    name: 'ResponseError',
    status_code: 429,
    error: /RATE_LIMIT_PER_MINUTE/,
  })

  // Redis holds each key's label, never the key.
  const inspect = new Redis(redis.url)
  t.teardown(() => inspect.quit())
  const keys = await inspect.keys('*')
  t.same((await inspect.keys('ratelimit:*')).sort(), [
    `ratelimit:key:${owner(ADMIN_KEY)}`,
    `ratelimit:key:${owner(READER_KEY)}`,
  ])
  for (const secret of [READER_KEY, ADMIN_KEY]) {
    t.notOk(
      keys.some((key) => key.includes(secret)),
      'no key in clear',
    )
  }

  // Redis gone: the limit fails open, the API keeps answering (readiness reports Redis down).
  await redis.stop()
  for (let i = 0; i < 4; i++) {
    const res = await me(one.url, ADMIN_KEY)
    t.equal(res.status, 200, 'served, uncounted, while Redis is down')
    await res.arrayBuffer()
  }
})

t.test('without keys, requests count per IP address', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const { url } = await listenTestApp(t, { REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: '1' })
  const first = await fetch(`${url}/api/me`)
  t.equal(first.status, 200)
  await first.arrayBuffer()
  const second = await fetch(`${url}/api/me`)
  t.equal(second.status, 429)
  t.match(await second.json(), { error: 'rate_limited', message: /this address may make 1 per/ })
  const inspect = new Redis(redis.url)
  t.teardown(() => inspect.quit())
  t.same(await inspect.keys('ratelimit:*'), ['ratelimit:ip:127.0.0.1'])
})

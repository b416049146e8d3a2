import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { buildTestApp, tempDir } from '../../helpers/api.ts'
import { standIn } from '../../helpers/ollama.ts'
import { startRedis } from '../../helpers/redis.ts'

t.test('all dependencies up: ok, each check with its latency', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const ollama = await standIn(t, { version: '0.12.6' })
  const app = await buildTestApp(t, { REDIS_URL: redis.url, OLLAMA_URL: ollama.url })
  await app.redis.ping().catch(() => undefined)
  const res = await app.inject({ method: 'GET', url: '/api/health' })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.equal(body.status, 'ok')
  for (const name of ['redis', 'lancedb', 'ollama']) {
    t.equal(body.checks[name].status, 'ok', name)
    t.type(body.checks[name].latency_ms, 'number')
  }
  t.equal(body.checks.ollama.version, '0.12.6')
  // A probe right after is answered from the same round (health-shared.test.ts has the detail).
  const again = await app.inject({ method: 'GET', url: '/api/health' })
  t.same(again.json(), body)
  t.equal(ollama.requests.filter((sent) => sent.path === '/api/version').length, 1)
})

t.test('Ollama down: degraded, still 200', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const app = await buildTestApp(t, { REDIS_URL: redis.url })
  const res = await app.inject({ method: 'GET', url: '/api/health' })
  t.equal(res.statusCode, 200)
  t.equal(res.json().status, 'degraded')
  t.match(res.json().checks.ollama, { status: 'down', error: /OLLAMA_URL=http:\/\/127\.0\.0\.1:1/ })
})

t.test('Ollama answering an error status is down', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const ollama = await standIn(t)
  // A path prefix Ollama does not serve: every call there is gin's text 404.
  const app = await buildTestApp(t, { REDIS_URL: redis.url, OLLAMA_URL: `${ollama.url}/nowhere` })
  const res = await app.inject({ method: 'GET', url: '/api/health' })
  t.equal(res.json().status, 'degraded')
  t.match(res.json().checks.ollama.error, /answered 404/)
})

t.test('Redis down: down, 503, with a message that hides the password', async (t) => {
  const ollama = await standIn(t)
  const app = await buildTestApp(t, {
    OLLAMA_URL: ollama.url,
    REDIS_URL: 'redis://:hunter2-password@127.0.0.1:1',
  })
  const res = await app.inject({ method: 'GET', url: '/api/health' })
  t.equal(res.statusCode, 503)
  t.equal(res.json().status, 'down')
  t.equal(res.json().checks.redis.status, 'down')
  t.match(
    res.json().checks.redis.error,
    /REDIS_URL=redis:\/\/:\*\*\*@127\.0\.0\.1:1 is not reachable/,
  )
  t.notMatch(res.body, /hunter2/)
  t.equal(res.json().checks.ollama.status, 'ok')
})

t.test('an unusable index directory: down, 503', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const dir = await tempDir(t)
  const file = join(dir, 'a-file')
  await writeFile(file, 'not a directory')
  const app = await buildTestApp(t, { REDIS_URL: redis.url, LANCEDB_URI: join(file, 'db') })
  const res = await app.inject({ method: 'GET', url: '/api/health' })
  t.equal(res.statusCode, 503)
  t.equal(res.json().checks.lancedb.status, 'down')
  t.match(res.json().checks.lancedb.error, /Not a directory/)
})

t.test('a check that hangs is cut at HEALTH_TIMEOUT_MS', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const ollama = await standIn(t)
  const app = await buildTestApp(t, { REDIS_URL: redis.url, OLLAMA_URL: ollama.url })
  // The stand-in's load delay applies to model calls; /api/version answers at once, so hang
  // the version call by pointing the check at a socket that accepts and never answers.
  const { createServer } = await import('node:net')
  const sockets = new Set<import('node:net').Socket>()
  const silent = createServer((socket) => sockets.add(socket))
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    return new Promise((resolve) => silent.close(resolve))
  })
  const port = (silent.address() as { port: number }).port
  const hung = await buildTestApp(t, {
    REDIS_URL: redis.url,
    OLLAMA_URL: `http://127.0.0.1:${port}`,
    HEALTH_TIMEOUT_MS: '100',
  })
  const res = await hung.inject({ method: 'GET', url: '/api/health' })
  t.equal(res.json().checks.ollama.status, 'down')
  t.match(res.json().checks.ollama.error, /no answer within 100 ms/)
  const ok = await app.inject({ method: 'GET', url: '/api/health' })
  t.equal(ok.json().checks.ollama.status, 'ok')
})

t.test('readiness fails once shutdown starts; liveness stays up', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const app = await buildTestApp(t, { REDIS_URL: redis.url })
  app.readiness.shuttingDown = true
  const res = await app.inject({ method: 'GET', url: '/api/health' })
  t.equal(res.statusCode, 503)
  t.equal(res.json().status, 'down')
  const live = await app.inject({ method: 'GET', url: '/api/health/live' })
  t.same(live.json(), { status: 'ok' })
})

import t from 'tap'
import { ADMIN_KEY, bearer, buildTestApp } from '../../helpers/api.ts'
import { ndjson, standIn } from '../../helpers/ollama.ts'

t.test('a non-streamed pull answers success once Ollama has the model', async (t) => {
  const ollama = await standIn(t, { pullTickMs: 1 })
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await app.inject({
    method: 'POST',
    url: '/api/pull',
    payload: { name: 'qwen3:0.6b' },
  })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'success' })
  t.same(ollama.requests.at(-1)?.body, { model: 'qwen3:0.6b', stream: true })
  const models = await app.inject({ method: 'GET', url: '/api/models' })
  t.ok(models.json().models.some((m: { name: string }) => m.name.startsWith('qwen3:0.6b')))
})

t.test('`model` is accepted like `name`, `insecure` is passed on', async (t) => {
  const ollama = await standIn(t, { pullTickMs: 1 })
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await app.inject({
    method: 'POST',
    url: '/api/pull',
    payload: { model: 'tinyllama', insecure: true },
  })
  t.equal(res.statusCode, 200)
  t.same(ollama.requests.at(-1)?.body, { model: 'tinyllama', stream: true, insecure: true })
})

t.test("a streamed pull relays Ollama's progress lines to success", async (t) => {
  const ollama = await standIn(t, { pullTickMs: 1, pullLayers: 2 })
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await app.inject({
    method: 'POST',
    url: '/api/pull',
    payload: { name: 'tinyllama', stream: true },
  })
  t.equal(res.headers['content-type'], 'application/x-ndjson')
  const statuses = ndjson(res.body).map((l) => l.status as string)
  t.equal(statuses[0], 'pulling manifest')
  t.ok(statuses.some((s) => /^pulling [0-9a-f]{12}$/.test(s)))
  t.same(statuses.slice(-3), ['verifying sha256 digest', 'writing manifest', 'success'])
})

t.test('a model the registry lacks: 404 without streaming, an error line with it', async (t) => {
  const ollama = await standIn(t, { pullTickMs: 1 })
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await app.inject({
    method: 'POST',
    url: '/api/pull',
    payload: { name: 'missing-model' },
  })
  t.equal(res.statusCode, 404)
  t.match(res.json(), {
    error: 'model_not_found',
    message: /missing-model: pull model manifest: file does not exist/,
  })

  const streamed = await app.inject({
    method: 'POST',
    url: '/api/pull',
    payload: { name: 'missing-model', stream: true },
  })
  t.same(ndjson(streamed.body).at(-1), {
    error: 'ollama_error',
    message: 'pull model manifest: file does not exist',
  })
})

t.test('pull failures and bad input', async (t) => {
  const ollama = await standIn(t, { pullTickMs: 1 })
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const none = await app.inject({ method: 'POST', url: '/api/pull', payload: {} })
  t.equal(none.statusCode, 400)
  t.match(none.json().message, /'name' \(or 'model'\)/)

  const invalid = await app.inject({
    method: 'POST',
    url: '/api/pull',
    payload: { name: 'bad name' },
  })
  t.equal(invalid.statusCode, 400)
  t.same(invalid.json(), { error: 'ollama_error', message: 'invalid model name', statusCode: 400 })

  ollama.options.failBeforeOutput = { status: 500, error: 'disk full' }
  const failed = await app.inject({
    method: 'POST',
    url: '/api/pull',
    payload: { name: 'tinyllama' },
  })
  t.equal(failed.statusCode, 502)
  t.match(failed.json().message, /disk full/)
})

t.test('a pull cut off mid-way is a 502, not a success', async (t) => {
  // An Ollama that dies after its first progress line.
  const { createServer } = await import('node:http')
  const dying = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' })
    res.end('{"status":"pulling manifest"}\n')
  })
  await new Promise<void>((resolve) => dying.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => dying.close(resolve)))
  const port = (dying.address() as { port: number }).port
  const app = await buildTestApp(t, { OLLAMA_URL: `http://127.0.0.1:${port}` })
  const res = await app.inject({ method: 'POST', url: '/api/pull', payload: { name: 'tinyllama' } })
  t.equal(res.statusCode, 502)
  t.match(res.json(), { error: 'ollama_error', message: /stopped before it finished/ })
})

t.test('pull needs an admin key when auth is on', async (t) => {
  const ollama = await standIn(t, { pullTickMs: 1 })
  const app = await buildTestApp(t, {
    OLLAMA_URL: ollama.url,
    ADMIN_API_KEYS: ADMIN_KEY,
    API_KEYS: 'reader-0123456789abcdef',
  })
  const reader = await app.inject({
    method: 'POST',
    url: '/api/pull',
    headers: bearer('reader-0123456789abcdef'),
    payload: { name: 'tinyllama' },
  })
  t.equal(reader.statusCode, 403)
  const admin = await app.inject({
    method: 'POST',
    url: '/api/pull',
    headers: bearer(ADMIN_KEY),
    payload: { name: 'tinyllama' },
  })
  t.equal(admin.statusCode, 200)
})

t.test('a client that leaves a non-streamed pull cancels it upstream', async (t) => {
  const { listenTestApp } = await import('../../helpers/api.ts')
  const { request } = await import('undici')
  const ollama = await standIn(t, { pullTickMs: 100, pullLayers: 5 })
  const { url } = await listenTestApp(t, { OLLAMA_URL: ollama.url })
  const controller = new AbortController()
  const aborted = ollama.waitForAbort(5_000)
  const pending = request(`${url}/api/pull`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'tinyllama' }),
    signal: controller.signal,
  })
  // Leave once progress is flowing (the pull takes 2 s), so the cancel lands mid-pull.
  setTimeout(() => controller.abort(), 500)
  await t.rejects(pending)
  t.equal((await aborted).path, '/api/pull')
})

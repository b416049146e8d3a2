import { createServer } from 'node:http'
import { Ollama } from 'ollama'
import t from 'tap'
import { ADMIN_KEY, listenTestApp, READER_KEY } from '../../helpers/api.ts'
import type { Json } from '../../helpers/grounded.ts'
import { ndjson, standIn } from '../../helpers/ollama.ts'
import type { OllamaStandIn } from '../../helpers/ollama-stand-in.ts'

// /ollama with plain model names, the model list and the probes, as the official `ollama` npm
// client sees them over a real socket: Ollama's answers relayed as they are, and every error in
// Ollama's `{error}` shape with Ollama's status.

type T = Parameters<typeof listenTestApp>[0]

async function gateway(t: T, stand: OllamaStandIn) {
  const { url } = await listenTestApp(t, {
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    OLLAMA_URL: stand.url,
  })
  const client = (key = READER_KEY) =>
    new Ollama({ host: `${url}/ollama`, headers: { Authorization: `Bearer ${key}` } })
  const call = (path: string, init: RequestInit = {}, key: string | null = READER_KEY) =>
    fetch(`${url}/ollama${path}`, {
      ...init,
      headers: key === null ? {} : { authorization: `Bearer ${key}` },
    })
  return { url, ollama: client(), client, call }
}

/** What a promise rejects with (or `{}` if it resolves). */
const failure = (promise: Promise<unknown>): Promise<Json> =>
  promise.then(
    () => ({}),
    (e: unknown) => e as Json,
  )

t.test('plain models pass through untouched', async (t) => {
  const stand = await standIn(t, { tokens: ['<b>', ' sky', ' & ', 'sea'] })
  const { ollama, client, call } = await gateway(t, stand)
  const lastBody = () => (stand.requests.at(-1) as { body: unknown }).body as Json

  t.test('chat, not streamed: the body as sent, the answer as written', async (t) => {
    const res = await ollama.chat({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'Why is the sky blue?' }],
      options: { temperature: 0, rag_top_k: 3 } as Json,
      keep_alive: '1m',
    })
    t.match(res, { model: 'llama3.2', message: { content: '<b> sky & sea' }, done: true })
    t.notOk('sources' in res, 'nothing grounded')
    t.same(stand.requests.at(-1)?.body, {
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'Why is the sky blue?' }],
      options: { temperature: 0, rag_top_k: 3 },
      keep_alive: '1m',
      stream: false,
    })
    // A turn that only called tools has no content: Ollama takes it so, and so does the gateway.
    const toolTurn = { role: 'assistant', tool_calls: [{ function: { name: 'f', arguments: {} } }] }
    const turns = [{ role: 'user', content: 'hi' }, toolTurn, { role: 'tool', content: '1' }]
    const replay = await call('/api/chat', {
      method: 'POST',
      body: JSON.stringify({ model: 'llama3.2', messages: turns, stream: false }),
    })
    t.equal(replay.status, 200)
    t.same(lastBody().messages, turns, 'sent on as it came')
    const raw = await call('/api/chat', {
      method: 'POST',
      body: JSON.stringify({ model: 'llama3.2', messages: [], stream: false }),
    })
    t.equal(raw.headers.get('content-type'), 'application/json; charset=utf-8')
    const loaded = await call('/api/chat', {
      method: 'POST',
      body: JSON.stringify({
        model: 'llama3.2',
        messages: [{ role: 'user', content: 'hi' }],
        stream: false,
      }),
    })
    t.match(await loaded.text(), /"content":"\\u003cb\\u003e sky \\u0026 sea"/, 'Ollama’s bytes')
  })

  t.test('chat, streamed: Ollama’s lines as they come', async (t) => {
    const stream = await ollama.chat({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'Why?' }],
      stream: true,
    })
    const parts: Json[] = []
    for await (const part of stream) parts.push(part as unknown as Json)
    t.same(
      parts.map((part) => part.message.content),
      ['<b>', ' sky', ' & ', 'sea', ''],
    )
    t.ok(parts.every((part) => part.model === 'llama3.2'))
    t.match(parts.at(-1), { done: true, done_reason: 'stop' })
    // Without `stream`, Ollama streams, and the field is not added on the way.
    const res = await call('/api/chat', {
      method: 'POST',
      body: JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'Why?' }] }),
    })
    t.equal(res.headers.get('content-type'), 'application/x-ndjson')
    t.equal(ndjson(await res.text()).length, 5)
    t.notOk('stream' in lastBody())
  })

  t.test('generate, not streamed and streamed', async (t) => {
    const res = await ollama.generate({ model: 'llama3.2', prompt: 'Why?', raw: true })
    t.match(res, { model: 'llama3.2', response: '<b> sky & sea', done: true })
    t.same(stand.requests.at(-1)?.body, {
      model: 'llama3.2',
      prompt: 'Why?',
      raw: true,
      stream: false,
    })
    const stream = await ollama.generate({ model: 'llama3.2', prompt: 'Why?', stream: true })
    const parts: Json[] = []
    for await (const part of stream) parts.push(part as unknown as Json)
    t.equal(parts.map((part) => part.response).join(''), '<b> sky & sea')
    t.equal(parts.length, 5)
  })

  t.test('with RAG_ENABLED=false an alias is its base model alone', async (t) => {
    const messages = [{ role: 'user', content: 'Why is the sky blue?' }]
    const res = await ollama.chat({ model: 'llama3.2+confluence', messages })
    t.match(res, { model: 'llama3.2+confluence', message: { content: '<b> sky & sea' } })
    t.same((res as unknown as Json).sources, [])
    t.match(lastBody(), { model: 'llama3.2', messages, stream: false })
    t.equal(stand.requests.filter((r) => r.path === '/api/embed').length, 0, 'no retrieval')
  })

  t.test('tags: each model, and right after it its alias if it can chat', async (t) => {
    const shows = () => stand.requests.filter((r) => r.path === '/api/show').length
    const before = shows()
    const { models } = await ollama.list()
    t.same(
      models.map((model) => model.name),
      ['llama3.2:latest', 'llama3.2:latest+confluence', 'nomic-embed-text:latest'],
      'no alias for an embedding-only model',
    )
    t.equal(shows() - before, 2, 'Ollama was asked what each model can do')
    await ollama.list()
    t.equal(shows() - before, 2, 'and remembers it while the models stay the same')
    // A model that changes has another digest: only it is asked about again.
    const listed = stand.options.models
    const embedder = listed[1] as (typeof listed)[number]
    stand.options.models = [
      listed[0] as (typeof listed)[number],
      { ...embedder, digest: 'f'.repeat(64), capabilities: ['completion'] },
    ]
    t.teardown(() => {
      stand.options.models = listed
    })
    const changed = await ollama.list()
    t.equal(shows() - before, 3)
    t.same(
      changed.models.map((model) => model.name),
      [
        'llama3.2:latest',
        'llama3.2:latest+confluence',
        'nomic-embed-text:latest',
        'nomic-embed-text:latest+confluence',
      ],
    )
    stand.options.models = listed
    const [plain, alias] = changed.models as unknown as [Json, Json]
    t.equal(alias.model, 'llama3.2:latest+confluence')
    t.same(alias.details, plain.details, 'same details')
    t.equal(alias.size, plain.size)
    t.equal(alias.digest, plain.digest)
    const head = await call('/api/tags', { method: 'HEAD' })
    t.equal(head.status, 200)
  })

  t.test('show: a plain model as Ollama answers, an alias as its base', async (t) => {
    const plain = await ollama.show({ model: 'llama3.2' })
    t.match(plain, { details: { family: 'llama', parent_model: '' }, capabilities: Array })
    const alias = await ollama.show({ model: 'llama3.2+confluence' })
    t.same(alias.model_info, plain.model_info)
    t.same(alias.capabilities, plain.capabilities)
    t.equal(alias.details.parent_model, 'llama3.2', 'the alias names its base')
    t.same(stand.requests.at(-1)?.body, { model: 'llama3.2' })
    // The deprecated `name`, and a tag after the suffix (a client that adds `:latest`).
    const res = await call('/api/show', {
      method: 'POST',
      body: JSON.stringify({ name: 'llama3.2+confluence:latest' }),
    })
    t.equal((await res.json()).details.parent_model, 'llama3.2:latest')
    t.same(stand.requests.at(-1)?.body, { model: 'llama3.2:latest' })
    const missing = await failure(ollama.show({ model: 'nope+confluence' }))
    t.match(missing, { name: 'ResponseError', status_code: 404, error: "model 'nope' not found" })
  })

  t.test('embed: passed through; an alias embeds with its base', async (t) => {
    const plain = await ollama.embed({ model: 'nomic-embed-text', input: ['a page', 'another'] })
    t.equal(plain.embeddings.length, 2)
    t.same(stand.requests.at(-1)?.body, {
      model: 'nomic-embed-text',
      input: ['a page', 'another'],
    })
    const alias = await ollama.embed({ model: 'nomic-embed-text+confluence', input: 'a page' })
    t.same(alias.embeddings[0], plain.embeddings[0], 'the same vector')
    t.equal(lastBody().model, 'nomic-embed-text')
    // The legacy route, as older clients call it.
    const legacy = await ollama.embeddings({ model: 'nomic-embed-text', prompt: 'a page' })
    t.same(lastBody(), { model: 'nomic-embed-text', prompt: 'a page' })
    const legacyAlias = await ollama.embeddings({
      model: 'nomic-embed-text:latest+confluence',
      prompt: 'a page',
    })
    t.same(legacyAlias.embedding, legacy.embedding)
    t.equal(lastBody().model, 'nomic-embed-text:latest')
    t.equal(legacy.embedding.length, 8)
  })

  t.test('version, ps and the root, as Ollama answers them', async (t) => {
    t.same(await ollama.version(), { version: '0.32.15' })
    t.same(await ollama.ps(), { models: [] })
    for (const path of ['', '/']) {
      const res = await call(path)
      t.equal(res.status, 200)
      t.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8')
      t.equal(await res.text(), 'Ollama is running')
      t.equal((await call(path, { method: 'HEAD' })).status, 200)
    }
    t.equal((await call('/api/version', { method: 'HEAD' })).status, 200)
  })

  t.test('errors: Ollama’s statuses, in Ollama’s {error} shape', async (t) => {
    const unknown = await failure(
      ollama.chat({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }),
    )
    t.match(unknown, { name: 'ResponseError', status_code: 404, error: "model 'nope' not found" })
    const generate = await failure(ollama.generate({ model: 'nope', prompt: 'hi', stream: true }))
    t.match(generate, { status_code: 404, error: "model 'nope' not found" })

    const tagCalls = () => stand.requests.filter((r) => r.path === '/api/tags').length
    const before = tagCalls()
    const none = await call('/api/tags', {}, null)
    t.equal(none.status, 401)
    t.same(await none.json(), {
      error: 'Send a valid API key as "Authorization: Bearer <key>"',
    })
    const wrong = await failure(client('wrong-key-0123456789abcdef').list())
    t.match(wrong, { name: 'ResponseError', status_code: 401, error: /valid API key/ })
    t.equal(tagCalls(), before, 'neither reached Ollama')

    const bad = await call('/api/chat', {
      method: 'POST',
      body: JSON.stringify({ model: 'llama3.2', messages: 'hi' }),
    })
    t.equal(bad.status, 400)
    t.same(Object.keys(await bad.json()), ['error'])
    const range = await failure(
      ollama.chat({
        model: 'llama3.2+confluence',
        messages: [],
        options: { rag_top_k: 0 } as Json,
      }),
    )
    t.match(range, { status_code: 400, error: /rag_top_k/ })
    const nameless = await call('/api/chat', { method: 'POST', body: '{"messages":[]}' })
    t.equal(nameless.status, 400)
    t.same(await nameless.json(), { error: 'model is required' }, 'Ollama’s own word')
    const empty = await call('/api/chat', { method: 'POST' })
    t.same(await empty.json(), { error: 'missing request body' })
    t.equal(empty.status, 400)

    const path = await call('/api/nothing')
    t.equal(path.status, 404)
    t.equal(await path.text(), '404 page not found')
    const method = await call('/api/chat')
    t.equal(method.status, 405)
    t.equal(await method.text(), '405 method not allowed')
  })

  t.test('a stream cut upstream throws in the client', async (t) => {
    stand.options.truncateAfterTokens = 2
    t.teardown(() => {
      stand.options.truncateAfterTokens = undefined
    })
    const stream = await ollama.chat({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    })
    const parts: Json[] = []
    const failed = await failure(
      (async () => {
        for await (const part of stream) parts.push(part as unknown as Json)
      })(),
    )
    t.match(failed.message, /stopped before it was complete/)
    t.equal(parts.length, 2)
    // Not streamed: Ollama's connection dies before its one object; the client gets an error.
    const whole = await failure(
      ollama.chat({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] }),
    )
    t.match(whole, { name: 'ResponseError', status_code: 503, error: /not reachable/ })
  })

  t.test('an error mid-stream reaches the client as Ollama’s error', async (t) => {
    stand.options.failAfterTokens = {
      count: 1,
      error: 'an error was encountered while running the model',
    }
    t.teardown(() => {
      stand.options.failAfterTokens = undefined
    })
    const stream = await ollama.generate({ model: 'llama3.2', prompt: 'hi', stream: true })
    const failed = await failure(
      (async () => {
        for await (const _part of stream);
      })(),
    )
    t.equal(failed.message, 'an error was encountered while running the model')
  })

  t.test('a client that goes away cancels the upstream request', async (t) => {
    stand.options.tokenDelayMs = 200
    t.teardown(() => {
      stand.options.tokenDelayMs = 0
    })
    const stream = await ollama.chat({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    })
    await failure(
      (async () => {
        for await (const _part of stream) stream.abort()
      })(),
    )
    const aborted = await stand.waitForAbort(10_000)
    t.equal(aborted.path, '/api/chat')
  })
})

t.test('an Ollama that cannot answer: 503 and 502 in Ollama’s shape', async (t) => {
  const down = await listenTestApp(t, { API_KEYS: READER_KEY })
  const res = await fetch(`${down.url}/ollama/api/tags`, {
    headers: { authorization: `Bearer ${READER_KEY}` },
  })
  t.equal(res.status, 503)
  t.match(await res.json(), { error: /Ollama is not reachable/ })

  // OLLAMA_URL naming some other server: a 200 that is no Ollama answer, a 404 page.
  const other = createServer((req, res) => {
    if (req.url === '/api/version') res.end('hello')
    else res.writeHead(404).end('nothing here')
  })
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => other.close(resolve)))
  const { port } = other.address() as { port: number }
  const { url } = await listenTestApp(t, {
    API_KEYS: READER_KEY,
    OLLAMA_URL: `http://127.0.0.1:${port}`,
  })
  const ollama = new Ollama({
    host: `${url}/ollama`,
    headers: { Authorization: `Bearer ${READER_KEY}` },
  })
  for (const request of [ollama.version(), ollama.list(), ollama.ps()]) {
    const err = await failure(request)
    t.match(err, { status_code: 502, error: /is it an Ollama server\?/ })
  }
  const root = await fetch(`${url}/ollama/`, { headers: { authorization: `Bearer ${READER_KEY}` } })
  t.equal(root.status, 502)
})

t.test('tags when Ollama says nothing of capabilities, or lists them itself', async (t) => {
  const digest = (n: number) => String(n).repeat(64)
  const listed: Json[] = [
    { name: 'old:latest', model: 'old:latest', digest: digest(1) },
    { name: 'broken:latest', model: 'broken:latest', digest: digest(2) },
    { name: 'embed:latest', model: 'embed:latest', digest: digest(3), capabilities: ['embedding'] },
    { name: 'chat:latest', model: 'chat:latest', digest: digest(4), capabilities: ['completion'] },
  ]
  const shown: string[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (chunk: Buffer) => {
      body += chunk
    })
    req.on('end', () => {
      res.setHeader('content-type', 'application/json; charset=utf-8')
      if (req.url === '/api/tags') return res.end(JSON.stringify({ models: listed }))
      const { model } = JSON.parse(body) as { model: string }
      shown.push(model)
      // An Ollama too old to report capabilities; a show that fails.
      if (model === 'old:latest') return res.end(JSON.stringify({ details: {} }))
      if (model === 'broken:latest') return res.writeHead(500).end('{"error":"disk on fire"}')
      res.writeHead(404).end(`{"error":"model '${model}' not found"}`)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  const { port } = server.address() as { port: number }
  const { url } = await listenTestApp(t, {
    API_KEYS: READER_KEY,
    OLLAMA_URL: `http://127.0.0.1:${port}`,
  })
  const ollama = new Ollama({
    host: `${url}/ollama`,
    headers: { Authorization: `Bearer ${READER_KEY}` },
  })
  const names = async () => (await ollama.list()).models.map((model) => model.name)
  const expected = [
    'old:latest',
    'old:latest+confluence',
    'broken:latest',
    'broken:latest+confluence',
    'embed:latest',
    'chat:latest',
    'chat:latest+confluence',
  ]
  t.same(await names(), expected, 'unknown capabilities: the alias is listed')
  t.same(shown.sort(), ['broken:latest', 'old:latest'], 'listed capabilities are not asked')
  t.same(await names(), expected)
  t.same(shown.sort(), ['broken:latest', 'broken:latest', 'old:latest'], 'a failure is asked again')
})

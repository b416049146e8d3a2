import { request as httpRequest } from 'node:http'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import t from 'tap'
import { ADMIN_KEY, listenTestApp, READER_KEY } from '../../helpers/api.ts'
import { startOllamaStandIn } from '../../helpers/ollama-stand-in.ts'

// /mcp at the HTTP level, over a real socket: keys, the stateless transport's methods, every
// status the route documents, an index that cannot be read, and a client that goes away while
// `ask` waits for the model.

const WRONG_KEY = 'wrong-key-0123456789abcdef-secret'
const MCP_ACCEPT = 'application/json, text/event-stream'

type T = { teardown(fn: () => unknown): void }

async function app(t: T, env: Record<string, string> = {}) {
  const { url } = await listenTestApp(t, {
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    BODY_LIMIT: '4096',
    ...env,
  })
  return `${url}/mcp`
}

/** A raw request to /mcp: the status, headers and body text. */
async function send(
  url: string,
  init: {
    method?: string
    key?: string
    body?: string
    type?: string
    accept?: string
    signal?: AbortSignal
  },
) {
  const headers: Record<string, string> = { accept: init.accept ?? MCP_ACCEPT }
  if (init.key !== undefined) headers.authorization = `Bearer ${init.key}`
  if (init.body !== undefined) headers['content-type'] = init.type ?? 'application/json'
  const res = await fetch(url, {
    method: init.method ?? 'POST',
    headers,
    body: init.body,
    signal: init.signal,
  })
  return { status: res.status, headers: res.headers, text: await res.text() }
}

/** A JSON-RPC message; `id` null: a notification. */
const rpc = (method: string, params?: unknown, id: number | null = 1) =>
  JSON.stringify({
    jsonrpc: '2.0',
    ...(id === null ? {} : { id }),
    method,
    ...(params ? { params } : {}),
  })

async function sdkClient(url: string, key?: string) {
  const client = new Client({ name: 'tests', version: '1.0.0' })
  const headers = key === undefined ? undefined : { Authorization: `Bearer ${key}` }
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }),
  )
  return client
}

t.test('the SDK client is refused without a key and with a wrong one', async (t) => {
  const url = await app(t)
  for (const key of [undefined, WRONG_KEY]) {
    const refused = await sdkClient(url, key).then(
      () => 'connected',
      (err: Error & { code?: number }) => err,
    )
    t.type(refused, Error, `key ${key === undefined ? 'absent' : 'wrong'}: not connected`)
    t.equal((refused as { code?: number }).code, 401)
    t.match((refused as Error).message, /Send a valid API key/)
    t.notMatch((refused as Error).message, WRONG_KEY, 'the key is not echoed')
  }
  const client = await sdkClient(url, READER_KEY)
  t.teardown(() => client.close())
  t.ok((await client.listTools()).tools.length === 3, 'a reader key is let in')
})

t.test('every documented status, over the wire', async (t) => {
  const url = await app(t)

  const noKey = await send(url, { body: rpc('tools/list') })
  t.equal(noKey.status, 401)
  t.equal(noKey.headers.get('www-authenticate'), 'Bearer realm="confluence-bot"')
  t.match(JSON.parse(noKey.text), { error: 'unauthorized', statusCode: 401 })
  const wrong = await send(url, { key: WRONG_KEY, body: rpc('tools/list') })
  t.equal(wrong.status, 401)
  t.notMatch(wrong.text, WRONG_KEY)

  const listed = await send(url, { key: READER_KEY, body: rpc('tools/list') })
  t.equal(listed.status, 200, 'a stateless server answers without an initialize first')
  t.match(listed.headers.get('content-type'), /^application\/json/)
  t.equal(listed.headers.get('mcp-session-id'), null, 'no session')
  t.same(
    JSON.parse(listed.text)
      .result.tools.map((tool: { name: string }) => tool.name)
      .sort(),
    ['ask', 'get_page', 'search'],
  )
  const admin = await send(url, { key: ADMIN_KEY, body: rpc('ping') })
  t.same(JSON.parse(admin.text), { jsonrpc: '2.0', id: 1, result: {} }, 'an admin key too')

  const note = await send(url, {
    key: READER_KEY,
    body: rpc('notifications/initialized', undefined, null),
  })
  t.equal(note.status, 202, 'a notification is accepted')
  t.equal(note.text, '')

  const notAcceptable = await send(url, {
    key: READER_KEY,
    body: rpc('tools/list'),
    accept: 'application/json',
  })
  t.equal(notAcceptable.status, 406)
  t.match(JSON.parse(notAcceptable.text), {
    jsonrpc: '2.0',
    error: { message: /text\/event-stream/ },
  })

  const notRpc = await send(url, { key: READER_KEY, body: JSON.stringify({ hello: 'world' }) })
  t.equal(notRpc.status, 400)
  t.match(JSON.parse(notRpc.text), { statusCode: 400, message: /jsonrpc|method/ })
  const broken = await send(url, { key: READER_KEY, body: '{"jsonrpc":' })
  t.equal(broken.status, 400)
  const unknownMethod = await send(url, { key: READER_KEY, body: rpc('resources/list') })
  t.equal(unknownMethod.status, 200)
  t.match(JSON.parse(unknownMethod.text), { id: 1, error: { code: -32601 } }, 'a JSON-RPC error')

  const tooBig = await send(url, {
    key: READER_KEY,
    body: rpc('tools/call', { name: 'search', arguments: { query: 'x'.repeat(8000) } }),
  })
  t.equal(tooBig.status, 413)
  const text = await send(url, { key: READER_KEY, body: rpc('tools/list'), type: 'text/plain' })
  t.equal(text.status, 415)

  const foreign = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${READER_KEY}`,
          'content-type': 'application/json',
          accept: MCP_ACCEPT,
          origin: 'https://evil.example',
        },
      },
      (res) => {
        res.resume()
        resolve(res.statusCode as number)
      },
    )
    req.on('error', reject)
    req.end(rpc('tools/list'))
  })
  t.equal(foreign, 403, 'a page of another site cannot call it')

  for (const method of ['GET', 'DELETE']) {
    const res = await send(url, { method, key: READER_KEY })
    t.equal(res.status, 405, `${method}: no session, nothing to stream or end`)
    t.equal(res.headers.get('allow'), 'POST')
    t.match(JSON.parse(res.text), { jsonrpc: '2.0', error: { message: /stateless/ }, id: null })
    t.equal((await send(url, { method })).status, 401, `${method} needs a key too`)
  }
  t.equal((await send(`${url}/`, { key: READER_KEY, body: rpc('ping') })).status, 404, 'one URL')
})

t.test('an index that cannot be read: tool errors that say so', async (t) => {
  const url = await app(t, { LANCEDB_URI: '/dev/null/lancedb' })
  const client = await sdkClient(url, READER_KEY)
  t.teardown(() => client.close())
  for (const [name, args] of [
    ['search', { query: 'rollback' }],
    ['get_page', { page_id: '101' }],
    ['get_page', { url: 'https://wiki.example/pages/101' }],
  ] as const) {
    const failed = (await client.callTool({ name, arguments: args })) as {
      isError?: boolean
      content: Array<{ text: string }>
    }
    t.equal(failed.isError, true, name)
    t.match(failed.content[0]?.text, /^The Confluence index cannot be read right now \(/)
  }
})

t.test('a client that goes away while ask waits for the model aborts the model call', async (t) => {
  const ollama = await startOllamaStandIn({ firstByteDelayMs: 30_000 })
  t.teardown(() => ollama.close())
  const url = await app(t, { OLLAMA_URL: ollama.url, RAG_ENABLED: 'false' })
  const gone = new AbortController()
  const pending = send(url, {
    key: READER_KEY,
    body: rpc('tools/call', { name: 'ask', arguments: { question: 'Are you there?' } }),
    signal: gone.signal,
  }).catch((err: Error) => err)
  while (!ollama.requests.some((r) => r.path === '/api/chat')) {
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  gone.abort()
  t.type(await pending, Error)
  const aborted = await ollama.waitForAbort(10_000)
  t.equal(aborted.path, '/api/chat')
  t.match(aborted.body, {
    model: 'llama3.2',
    stream: false,
    messages: [{ content: 'Are you there?' }],
  })
})

t.test(
  'ask without grounding (RAG_ENABLED=false) answers from the model, no sources',
  async (t) => {
    const ollama = await startOllamaStandIn({ tokens: ['Hello', ' there.'] })
    t.teardown(() => ollama.close())
    const url = await app(t, { OLLAMA_URL: ollama.url, RAG_ENABLED: 'false' })
    const client = await sdkClient(url, READER_KEY)
    t.teardown(() => client.close())
    const answered = await client.callTool({ name: 'ask', arguments: { question: 'Hi?' } })
    t.match(answered, {
      content: [{ type: 'text', text: 'Hello there.' }],
      structuredContent: { answer: 'Hello there.', model: 'llama3.2', sources: [] },
    })
    t.notOk(answered.isError)

    ollama.options.failBeforeOutput = { status: 500, error: 'the model crashed' }
    const failed = await client.callTool({ name: 'ask', arguments: { question: 'Hi?' } })
    t.match(failed, {
      isError: true,
      content: [{ type: 'text', text: 'Ollama failed: the model crashed' }],
    })
  },
)

t.test('ask tells a client that asked for progress that it is still waiting', async (t) => {
  // Longer than one heartbeat: the model takes 6 s to load.
  const ollama = await startOllamaStandIn({ tokens: ['Loaded.'], firstByteDelayMs: 6_000 })
  t.teardown(() => ollama.close())
  const url = await app(t, { OLLAMA_URL: ollama.url, RAG_ENABLED: 'false' })
  const client = await sdkClient(url, READER_KEY)
  t.teardown(() => client.close())
  const notes: Array<{ progress: number; message?: string }> = []
  const answered = await client.callTool(
    { name: 'ask', arguments: { question: 'Hi?' } },
    undefined,
    {
      onprogress: (note) => notes.push(note),
      resetTimeoutOnProgress: true,
    },
  )
  t.match(answered, { structuredContent: { answer: 'Loaded.' } })
  t.ok(notes.length >= 1, 'progress while the model loaded')
  t.match(notes[0], { progress: 1, message: 'Waiting for the model to answer' })

  const raw = await send(url, {
    key: READER_KEY,
    body: rpc('tools/list', { _meta: { progressToken: 'p1' } }),
  })
  t.equal(raw.status, 200)
  t.match(raw.headers.get('content-type'), /^text\/event-stream/, 'an SSE stream carries progress')
  const data = raw.text.split('\n').find((line) => line.startsWith('data: ')) as string
  t.equal(JSON.parse(data.slice(6)).result.tools.length, 3)
})

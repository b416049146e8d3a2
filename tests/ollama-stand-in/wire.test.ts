// Raw-HTTP checks of the Ollama stand-in: framing, headers, escaping, status codes and the
// timing knobs, byte for byte (shared/reference/ollama-api.md §0, §1, §4).
import { type IncomingHttpHeaders, request } from 'node:http'
import t, { type Test } from 'tap'
import {
  DEFAULT_MODELS,
  DEFAULT_TOKENS,
  goJson,
  type OllamaStandIn,
  rfc3339Nano,
  type StandInModel,
  type StandInOptions,
  startOllamaStandIn,
} from '../helpers/ollama-stand-in.ts'

const MODEL = 'llama3.2'
const CHAT = { model: MODEL, messages: [{ role: 'user', content: 'hi' }] }
const GENERATE = { model: MODEL, prompt: 'Why is the sky blue?' }

type Raw = {
  status: number
  headers: IncomingHttpHeaders
  text: string
  /** 'data' events seen by the client: one per TCP read. */
  dataEvents: number
  /** ms from sending the request to the response (status line + headers) arriving. */
  responseMs: number
  /** ms from sending the request to the end of the body. */
  totalMs: number
}

function send(
  url: string,
  method: string,
  path: string,
  body?: string | object,
  headers: Record<string, string> = {},
): Promise<Raw> {
  const payload = typeof body === 'object' ? JSON.stringify(body) : body
  // GET and DELETE bodies are not chunked by node:http: frame them with a Content-Length.
  const framing =
    payload === undefined ? {} : { 'Content-Length': String(Buffer.byteLength(payload)) }
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const options = { method, headers: { ...framing, ...headers }, agent: false }
    const req = request(`${url}${path}`, options, (res) => {
      const responseMs = performance.now() - started
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', reject)
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text: Buffer.concat(chunks).toString('utf8'),
          dataEvents: chunks.length,
          responseMs,
          totalMs: performance.now() - started,
        }),
      )
    })
    req.on('error', reject)
    req.end(payload)
  })
}

async function setup(t: Test, options?: Partial<StandInOptions>) {
  const standIn = await startOllamaStandIn(options)
  t.teardown(() => standIn.close())
  const post = (path: string, body?: string | object, headers?: Record<string, string>) =>
    send(standIn.url, 'POST', path, body, headers)
  return { standIn, post }
}

/** NDJSON framing: `\n`-terminated compact Go-encoded lines, no blank lines, no `\r`. */
function ndjson(t: Test, raw: Raw): Record<string, unknown>[] {
  t.equal(raw.status, 200)
  t.equal(raw.headers['content-type'], 'application/x-ndjson')
  t.equal(raw.headers['transfer-encoding'], 'chunked')
  t.notOk('content-length' in raw.headers, 'no content-length on a stream')
  t.ok(raw.text.endsWith('\n'), 'last line ends with \\n')
  t.notOk(raw.text.includes('\r'), 'no \\r')
  const lines = raw.text.slice(0, -1).split('\n')
  t.notOk(
    lines.some((line) => line === ''),
    'no blank lines',
  )
  const values = lines.map((line) => JSON.parse(line) as Record<string, unknown>)
  t.same(
    lines,
    values.map((value) => goJson(value)),
    'every line is compact Go JSON',
  )
  return values
}

/** A single non-streamed JSON object with Content-Length and no trailing newline. */
function single(t: Test, raw: Raw, status = 200): Record<string, unknown> {
  t.equal(raw.status, status)
  t.equal(raw.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(raw.headers['content-length'], String(Buffer.byteLength(raw.text)))
  t.notOk(raw.text.includes('\n'), 'no newline')
  const value = JSON.parse(raw.text) as Record<string, unknown>
  t.equal(raw.text, goJson(value), 'compact Go JSON')
  return value
}

t.test('goJson escapes HTML like Go and rfc3339Nano trims zeros', async (t) => {
  t.equal(goJson({ a: '<b> & \u2028\u2029' }), '{"a":"\\u003cb\\u003e \\u0026 \\u2028\\u2029"}')
  t.equal(goJson({ b: 1, a: [true, null] }), '{"b":1,"a":[true,null]}', 'insertion order')
  const at = Date.UTC(2023, 7, 4, 19, 22, 45, 499)
  t.equal(rfc3339Nano(at + 0.125), '2023-08-04T19:22:45.499125Z')
  t.equal(rfc3339Nano(at + 0.5), '2023-08-04T19:22:45.4995Z')
  t.equal(rfc3339Nano(at - 499), '2023-08-04T19:22:45Z')
  t.match(rfc3339Nano(), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$/)
})

t.test('GET and HEAD / answer "Ollama is running" as text', async (t) => {
  const { standIn } = await setup(t)
  const get = await send(standIn.url, 'GET', '/')
  t.equal(get.status, 200)
  t.equal(get.headers['content-type'], 'text/plain; charset=utf-8')
  t.equal(get.headers['content-length'], '17')
  t.equal(get.text, 'Ollama is running')
  const head = await send(standIn.url, 'HEAD', '/')
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], '17')
  t.equal(head.text, '')
})

t.test('version, tags and ps are single JSON objects', async (t) => {
  const { standIn } = await setup(t, { version: '0.5.1' })
  const version = await send(standIn.url, 'GET', '/api/version')
  t.equal(version.text, '{"version":"0.5.1"}')
  single(t, version)
  const head = await send(standIn.url, 'HEAD', '/api/version')
  t.equal(head.headers['content-length'], '19')
  t.equal(head.text, '')
  const tags = await send(standIn.url, 'GET', '/api/tags?verbose=1')
  t.match(
    tags.text,
    /^\{"models":\[\{"name":"llama3\.2:latest","model":"llama3\.2:latest","modified_at":"[^"]+","size":2019393189,"digest":"[0-9a-f]{64}","details":\{"parent_model":"","format":"gguf","family":"llama","families":\["llama"\],"parameter_size":"3\.2B","quantization_level":"Q4_K_M"\}\},/,
  )
  single(t, tags)
  const headTags = await send(standIn.url, 'HEAD', '/api/tags')
  t.equal(headTags.headers['content-length'], String(Buffer.byteLength(tags.text)))
  const ps = await send(standIn.url, 'GET', '/api/ps')
  t.equal(ps.text, '{"models":[]}')
  standIn.options.models = []
  const empty = await send(standIn.url, 'GET', '/api/tags')
  t.equal(empty.text, '{"models":[]}')
})

t.test('stream defaults to true on chat, generate and pull', async (t) => {
  const { post } = await setup(t)
  const generate = ndjson(t, await post('/api/generate', GENERATE))
  t.equal(generate.length, DEFAULT_TOKENS.length + 1)
  t.same(Object.keys(generate[0] ?? {}), ['model', 'created_at', 'response', 'done'])
  t.same(Object.keys(generate.at(-1) ?? {}), [
    'model',
    'created_at',
    'response',
    'done',
    'done_reason',
    'context',
    'total_duration',
    'load_duration',
    'prompt_eval_count',
    'prompt_eval_duration',
    'eval_count',
    'eval_duration',
  ])
  const chat = ndjson(t, await post('/api/chat', CHAT))
  t.equal(chat.length, DEFAULT_TOKENS.length + 1)
  t.same(Object.keys(chat[0] ?? {}), ['model', 'created_at', 'message', 'done'])
  t.same(Object.keys(chat.at(-1) ?? {}), [
    'model',
    'created_at',
    'message',
    'done',
    'done_reason',
    'total_duration',
    'load_duration',
    'prompt_eval_count',
    'prompt_eval_duration',
    'eval_count',
    'eval_duration',
  ])
  const pull = ndjson(t, await post('/api/pull', { model: 'phi3' }))
  t.same(pull.at(-1), { status: 'success' })
  const explicit = ndjson(t, await post('/api/chat', { ...CHAT, stream: true }))
  t.equal(explicit.length, DEFAULT_TOKENS.length + 1)
})

t.test('stream:false answers one JSON object without a trailing newline', async (t) => {
  const { post } = await setup(t)
  const chat = single(t, await post('/api/chat', { ...CHAT, stream: false }))
  t.match(chat, { message: { role: 'assistant', content: DEFAULT_TOKENS.join('') }, done: true })
  const generate = single(t, await post('/api/generate', { ...GENERATE, stream: false }))
  t.equal(generate.response, DEFAULT_TOKENS.join(''))
  t.equal(generate.done_reason, 'stop')
})

t.test('tokens with <, > and & are HTML-escaped on the wire', async (t) => {
  const { post } = await setup(t, { tokens: ['<b>', ' & ', '</b>'] })
  const raw = await post('/api/generate', GENERATE)
  t.ok(raw.text.includes('"response":"\\u003cb\\u003e"'), 'raw bytes hold \\u003cb\\u003e')
  t.ok(raw.text.includes('"response":" \\u0026 "'))
  t.ok(raw.text.includes('\\u003c/b\\u003e'))
  t.notMatch(raw.text, /[<>&]/, 'no raw <, > or &')
  const lines = ndjson(t, raw)
  t.equal(lines.map((line) => line.response).join(''), '<b> & </b>')
  const chat = await post('/api/chat', { ...CHAT, stream: false })
  t.ok(chat.text.includes('"content":"\\u003cb\\u003e \\u0026 \\u003c/b\\u003e"'))
})

t.test('an empty body is 400 missing request body on every JSON route', async (t) => {
  const { standIn } = await setup(t)
  const routes = [
    ['POST', '/api/generate'],
    ['POST', '/api/chat'],
    ['POST', '/api/embed'],
    ['POST', '/api/embeddings'],
    ['POST', '/api/show'],
    ['POST', '/api/pull'],
    ['DELETE', '/api/delete'],
  ] as const
  for (const [method, path] of routes) {
    for (const body of [undefined, '', ' \n\t']) {
      const raw = await send(standIn.url, method, path, body)
      t.same(single(t, raw, 400), { error: 'missing request body' }, `${method} ${path}`)
    }
  }
})

t.test('malformed JSON gets Go encoding/json messages', async (t) => {
  const { post } = await setup(t)
  const cases: [string, string][] = [
    ['xyz', "invalid character 'x' looking for beginning of value"],
    ["'", "invalid character '\\'' looking for beginning of value"],
    ['{bad', "invalid character 'b' looking for beginning of object key string"],
    ['{"model" 1}', "invalid character '1' after object key"],
    ['{"model":"a" "b"}', "invalid character '\"' after object key:value pair"],
    ['{"messages":[1 2]}', "invalid character '2' after array element"],
    ['{"model":"\u0001"}', "invalid character '\u0001' in string literal"],
    ['{"model":', 'unexpected EOF'],
    ['{"model":"abc', 'unexpected EOF'],
    ['[1]', 'json: cannot unmarshal array into Go value of type api.ChatRequest'],
    ['"x"', 'json: cannot unmarshal string into Go value of type api.ChatRequest'],
    ['true', 'json: cannot unmarshal bool into Go value of type api.ChatRequest'],
    ['null', 'model is required'],
  ]
  for (const [body, error] of cases) {
    t.same(single(t, await post('/api/chat', body), 400), { error }, body)
  }
  const trailing = await post('/api/chat', `${JSON.stringify({ model: MODEL })} trailing`)
  t.equal(
    single(t, trailing).done_reason,
    'load',
    'Go decodes the first value and ignores the rest',
  )
})

t.test('wrongly typed fields get Go unmarshal messages', async (t) => {
  const { post } = await setup(t)
  const field = (path: string, actual: string, want: string) =>
    `json: cannot unmarshal ${actual} into Go struct field ${path} of type ${want}`
  const cases: [string, object, string][] = [
    [
      '/api/chat',
      { model: MODEL, messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }] },
      field('ChatRequest.messages.content', 'array', 'string'),
    ],
    [
      '/api/chat',
      { model: MODEL, messages: 'hi' },
      field('ChatRequest.messages', 'string', '[]api.Message'),
    ],
    [
      '/api/chat',
      { model: MODEL, messages: [1] },
      field('ChatRequest.messages', 'number', 'api.Message'),
    ],
    [
      '/api/chat',
      { model: MODEL, messages: [{ role: 1 }] },
      field('ChatRequest.messages.role', 'number', 'string'),
    ],
    ['/api/chat', { ...CHAT, stream: 'yes' }, field('ChatRequest.stream', 'string', 'bool')],
    ['/api/chat', { model: 5 }, field('ChatRequest.model', 'number', 'string')],
    [
      '/api/generate',
      { model: MODEL, prompt: {} },
      field('GenerateRequest.prompt', 'object', 'string'),
    ],
    ['/api/pull', { model: ['x'] }, field('PullRequest.model', 'array', 'string')],
  ]
  for (const [path, body, error] of cases) {
    t.same(single(t, await post(path, body), 400), { error }, error)
  }
  const nullMessage = await post('/api/chat', { model: MODEL, stream: false, messages: [null] })
  t.equal(single(t, nullMessage).done_reason, 'stop', 'a null message is a zero Message, as in Go')
})

t.test('the Content-Type of a request does not matter', async (t) => {
  const { post, standIn } = await setup(t)
  const curl = await post(
    '/api/chat',
    { ...CHAT, stream: false },
    {
      'Content-Type': 'application/x-www-form-urlencoded',
    },
  )
  t.equal(single(t, curl).done, true)
  t.equal(standIn.requests[0]?.headers['content-type'], 'application/x-www-form-urlencoded')
})

t.test('unknown paths are 404 and wrong methods 405, as gin text', async (t) => {
  const { standIn } = await setup(t)
  for (const [method, path] of [
    ['GET', '/nope'],
    ['POST', '/api/unknown'],
    ['GET', '/v1/models'],
    ['GET', '/__proto__'],
  ]) {
    const raw = await send(standIn.url, method ?? '', path ?? '')
    t.equal(raw.status, 404, `${method} ${path}`)
    t.equal(raw.headers['content-type'], 'text/plain')
    t.equal(raw.text, '404 page not found')
    t.equal(raw.headers['content-length'], '18')
  }
  for (const [method, path] of [
    ['GET', '/api/chat'],
    ['POST', '/api/tags'],
    ['GET', '/api/delete'],
    ['DELETE', '/api/pull'],
    ['POST', '/'],
  ]) {
    const raw = await send(standIn.url, method ?? '', path ?? '', '{}')
    t.equal(raw.status, 405, `${method} ${path}`)
    t.equal(raw.headers['content-type'], 'text/plain')
    t.equal(raw.text, '405 method not allowed')
  }
})

t.test('the exact error messages', async (t) => {
  const { standIn } = await setup(t)
  const cases: [string, string, object, number, string][] = [
    ['POST', '/api/generate', { prompt: 'x' }, 404, "model '' not found"],
    ['POST', '/api/generate', { model: 'llama3', prompt: 'x' }, 404, "model 'llama3' not found"],
    ['POST', '/api/generate', { model: 'llama3.2:1b' }, 404, "model 'llama3.2:1b' not found"],
    ['POST', '/api/generate', { model: 'bad name' }, 400, 'invalid model name'],
    [
      'POST',
      '/api/generate',
      { model: 'nomic-embed-text', prompt: 'x' },
      400,
      '"nomic-embed-text" does not support generate',
    ],
    ['POST', '/api/chat', {}, 400, 'model is required'],
    ['POST', '/api/chat', { model: '' }, 400, 'model is required'],
    ['POST', '/api/chat', { model: 'a b' }, 400, 'invalid model name'],
    ['POST', '/api/chat', { model: 'Llama3' }, 404, "model 'Llama3' not found"],
    ['POST', '/api/embed', { model: '', input: 'x' }, 404, "model '' not found"],
    ['POST', '/api/embed', { model: 'a b', input: 'x' }, 400, 'invalid model name'],
    ['POST', '/api/embed', { model: 'x', input: 5 }, 400, 'invalid input type'],
    ['POST', '/api/embed', { model: 'x', input: ['a', 1] }, 400, 'invalid input type'],
    ['POST', '/api/embed', { model: 'x', input: {} }, 400, 'invalid input type'],
    [
      'POST',
      '/api/embed',
      { model: 'llama3', input: 'x' },
      404,
      'model "llama3" not found, try pulling it first',
    ],
    ['POST', '/api/embeddings', { prompt: 'x' }, 400, 'model is required'],
    ['POST', '/api/embeddings', { model: 'a b' }, 400, 'invalid model name'],
    [
      'POST',
      '/api/embeddings',
      { model: 'llama3' },
      404,
      'model "llama3" not found, try pulling it first',
    ],
    ['POST', '/api/show', {}, 400, 'model is required'],
    ['POST', '/api/show', { model: 'a b' }, 400, 'invalid model name'],
    ['POST', '/api/show', { name: 'llama3' }, 404, "model 'llama3' not found"],
    ['POST', '/api/pull', {}, 400, 'invalid model name'],
    ['POST', '/api/pull', { name: 'has space' }, 400, 'invalid model name'],
    ['DELETE', '/api/delete', {}, 400, 'model is required'],
    ['DELETE', '/api/delete', { model: 'a b' }, 400, 'name "a b" is invalid'],
    ['DELETE', '/api/delete', { name: 'llama3' }, 404, "model 'llama3' not found"],
  ]
  for (const [method, path, body, status, error] of cases) {
    const raw = await send(standIn.url, method, path, JSON.stringify(body))
    t.same(single(t, raw, status), { error }, `${path} ${JSON.stringify(body)}`)
  }
})

t.test('model names match ignoring case, tag and default namespace', async (t) => {
  const { post } = await setup(t)
  for (const model of [
    'LLAMA3.2',
    'llama3.2:LATEST',
    'library/llama3.2',
    'registry.ollama.ai/library/llama3.2:latest',
  ]) {
    const raw = await post('/api/chat', { model, messages: CHAT.messages, stream: false })
    t.equal(single(t, raw).model, model, `${model}: echoed as sent`)
  }
  const show = single(t, await post('/api/show', { name: 'Llama3.2' }))
  t.same(Object.keys(show), [
    'modelfile',
    'template',
    'details',
    'model_info',
    'capabilities',
    'modified_at',
  ])
})

t.test('embed and embeddings edge cases', async (t) => {
  const { post, standIn } = await setup(t)
  for (const input of ['', [], null, undefined]) {
    const raw = await post('/api/embed', { model: 'nomic-embed-text', input })
    t.equal(raw.text, '{"model":"nomic-embed-text","embeddings":[]}', JSON.stringify(input))
  }
  const whole = single(
    t,
    await post('/api/embed', { model: 'nomic-embed-text', input: 'x', dimensions: 99 }),
  )
  t.same(Object.keys(whole), [
    'model',
    'embeddings',
    'total_duration',
    'load_duration',
    'prompt_eval_count',
  ])
  t.equal(
    (whole.embeddings as number[][])[0]?.length,
    8,
    'dimensions >= the model size are ignored',
  )
  t.equal(standIn.embedCalls, 5)
  const legacy = await post('/api/embeddings', { model: 'nomic-embed-text', prompt: '' })
  t.equal(legacy.text, '{"embedding":[]}')
  const vector = single(
    t,
    await post('/api/embeddings', { model: 'nomic-embed-text', prompt: 'x' }),
  )
  t.same(Object.keys(vector), ['embedding'])
})

t.test('an empty prompt or no messages answer one load object, even streaming', async (t) => {
  const { post } = await setup(t)
  const generate = await post('/api/generate', { model: MODEL })
  t.match(
    generate.text,
    /^\{"model":"llama3\.2","created_at":"[^"]+","response":"","done":true,"done_reason":"load"\}$/,
  )
  single(t, generate)
  const chat = await post('/api/chat', { model: MODEL, messages: [] })
  t.match(
    chat.text,
    /^\{"model":"llama3\.2","created_at":"[^"]+","message":\{"role":"assistant","content":""\},"done":true,"done_reason":"load"\}$/,
  )
  single(t, chat)
  t.equal(single(t, await post('/api/chat', { model: MODEL })).done_reason, 'load')
  const unloads = [
    ['/api/generate', { model: MODEL, keep_alive: 0 }],
    ['/api/generate', { model: MODEL, prompt: '', keep_alive: '0' }],
    ['/api/chat', { model: MODEL, keep_alive: '0s' }],
  ] as const
  for (const [path, body] of unloads) {
    t.equal(single(t, await post(path, body)).done_reason, 'unload', JSON.stringify(body))
  }
  t.equal(
    single(t, await post('/api/chat', { model: MODEL, keep_alive: '5m' })).done_reason,
    'load',
  )
})

t.test('an error after N tokens is an NDJSON line with status 200 and no done', async (t) => {
  const { post, standIn } = await setup(t, { failAfterTokens: { count: 2, error: 'boom' } })
  const raw = await post('/api/generate', GENERATE)
  const lines = ndjson(t, raw)
  t.equal(lines.length, 3)
  t.ok(raw.text.endsWith('\n{"error":"boom"}\n'), 'the last line is exactly {"error":…}')
  t.notOk(
    lines.some((line) => line.done === true),
    'no done line',
  )
  standIn.options.failAfterTokens = { count: 0, error: 'boom' }
  const before = await post('/api/chat', CHAT)
  t.same(single(t, before, 500), { error: 'boom' }, 'nothing written yet: a JSON 500, as Go does')
  standIn.options.failAfterTokens = { count: 99, error: 'late' }
  const late = ndjson(t, await post('/api/chat', CHAT))
  t.equal(late.length, DEFAULT_TOKENS.length + 1, 'every token, then the error instead of done')
  t.same(late.at(-1), { error: 'late' })
})

t.test('firstByteDelayMs holds back even the headers; failBeforeOutput follows it', async (t) => {
  const { post, standIn } = await setup(t, { firstByteDelayMs: 150 })
  const raw = await post('/api/chat', CHAT)
  t.ok(raw.responseMs >= 140, `headers after ${raw.responseMs.toFixed(0)} ms`)
  ndjson(t, raw)
  standIn.options.failBeforeOutput = { status: 500, error: 'model failed to load' }
  const failed = await post('/api/embeddings', { model: 'nomic-embed-text', prompt: 'x' })
  t.ok(failed.responseMs >= 140, 'the error comes after the load time')
  t.same(single(t, failed, 500), { error: 'model failed to load' })
})

t.test('tokenDelayMs paces the lines, streamed or not', async (t) => {
  const { post } = await setup(t, { tokens: ['a', 'b', 'c'], tokenDelayMs: 40 })
  const streamed = await post('/api/chat', CHAT)
  t.ok(streamed.responseMs < streamed.totalMs - 60, 'the first line comes at once')
  t.ok(streamed.totalMs >= 110, `3 gaps of 40 ms took ${streamed.totalMs.toFixed(0)} ms`)
  const whole = await post('/api/generate', { ...GENERATE, stream: false })
  t.ok(whole.responseMs >= 110, 'stream:false waits for the whole generation')
  t.equal(single(t, whole).response, 'abc')
})

t.test('splitWrites sends every line in several TCP writes', async (t) => {
  const { post } = await setup(t, { splitWrites: true, tokens: ['é', '<', 'ok'] })
  const raw = await post('/api/chat', CHAT)
  const lines = ndjson(t, raw)
  t.equal(lines.length, 4)
  t.ok(
    raw.dataEvents >= lines.length * 3,
    `${raw.dataEvents} data events for ${lines.length} lines`,
  )
  t.equal(lines.map((line) => (line.message as { content: string }).content).join(''), 'é<ok')
  const pull = await post('/api/pull', { model: 'tiny' })
  const progress = ndjson(t, pull)
  t.ok(pull.dataEvents >= progress.length * 3, 'pull lines are split too')
  const error = await post('/api/pull', { model: 'missing-tiny' })
  t.equal(
    error.text,
    '{"status":"pulling manifest"}\n{"error":"pull model manifest: file does not exist"}\n',
  )
})

t.test('pull with stream:false sends nothing, not even headers, until done', async (t) => {
  const { post, standIn } = await setup(t, { pullLayers: 1, pullTickMs: 25 })
  // manifest, 4 layer lines, verifying, writing, success: 8 lines, 7 ticks
  const raw = await post('/api/pull', { model: 'gemma3', stream: false })
  t.ok(raw.responseMs >= 7 * 25 - 10, `response event after ${raw.responseMs.toFixed(0)} ms`)
  t.equal(raw.text, '{"status":"success"}')
  single(t, raw)
  const streamed = await post('/api/pull', { model: 'gemma3:2b' })
  t.ok(streamed.responseMs < streamed.totalMs - 100, 'a streamed pull answers at once')
  t.ok(streamed.totalMs >= 7 * 25 - 10)
  const missing = await post('/api/pull', { model: 'user/missing-model', stream: false })
  t.same(single(t, missing, 500), { error: 'pull model manifest: file does not exist' })
  const names = standIn.options.models.map((model) => model.name)
  t.ok(names.includes('gemma3:latest') && names.includes('gemma3:2b'), 'both pulls installed')
  const deleted = await send(standIn.url, 'DELETE', '/api/delete', { model: 'gemma3' })
  t.equal(deleted.status, 200)
  t.equal(deleted.text, '')
  t.equal(deleted.headers['content-length'], '0')
  t.notOk('content-type' in deleted.headers, 'no content type on the empty 200')
})

t.test('truncateAfterTokens stops the stream without done or error', async (t) => {
  const { post, standIn } = await setup(t, { truncateAfterTokens: 2 })
  const raw = await post('/api/generate', GENERATE)
  t.equal(raw.headers.connection, 'close')
  const lines = ndjson(t, raw)
  t.equal(lines.length, 2)
  t.notOk(
    lines.some((line) => 'done_reason' in line || 'error' in line),
    'no done, no error',
  )
  standIn.options.truncateAfterTokens = 0
  const empty = await post('/api/chat', CHAT)
  t.equal(empty.status, 200)
  t.equal(empty.text, '', 'truncated before the first token: an empty stream')
  standIn.options.truncateAfterTokens = 1
  standIn.options.truncateMode = 'destroy'
  await t.rejects(post('/api/chat', CHAT), { code: 'ECONNRESET' }, 'destroyed mid-body')
  await t.rejects(post('/api/chat', { ...CHAT, stream: false }), { code: 'ECONNRESET' })
  t.same(standIn.aborted, [])
})

t.test('requests are recorded in order with headers and bodies', async (t) => {
  const { post, standIn } = await setup(t)
  await post('/api/generate?debug=1', GENERATE, { 'X-Trace': 'abc' })
  await send(standIn.url, 'GET', '/api/tags')
  await post('/api/chat', '{oops')
  const [generate, tags, chat] = standIn.requests
  t.equal(generate?.method, 'POST')
  t.equal(generate?.path, '/api/generate', 'no query string')
  t.equal(generate?.query, '?debug=1', 'the query string, raw')
  t.equal(generate?.headers['x-trace'], 'abc')
  t.same(generate?.body, GENERATE)
  t.equal(generate?.rawBody, JSON.stringify(GENERATE))
  t.same(tags, {
    method: 'GET',
    path: '/api/tags',
    query: '',
    headers: tags?.headers,
    body: undefined,
    rawBody: '',
  })
  t.equal(chat?.body, undefined, 'unparseable body')
  t.equal(chat?.rawBody, '{oops')
  t.equal(standIn.requests.length, 3)
})

/** Sends a request and destroys the socket after `afterMs`; resolves when it is gone. */
function hangUp(url: string, path: string, body: object, afterMs: number): Promise<void> {
  return new Promise((resolve) => {
    const req = request(`${url}${path}`, { method: 'POST', agent: false }, (res) => res.resume())
    req.on('error', () => resolve())
    req.on('close', () => resolve())
    req.end(JSON.stringify(body))
    setTimeout(() => req.destroy(), afterMs)
  })
}

t.test('a client that goes away is recorded as an abort', async (t) => {
  const { standIn } = await setup(t, { firstByteDelayMs: 300 })
  const waiting = standIn.waitForAbort(1000)
  await hangUp(standIn.url, '/api/chat', CHAT, 30)
  const aborted = await waiting
  t.equal(aborted.path, '/api/chat', 'abort during the load')
  standIn.options.firstByteDelayMs = 0
  standIn.options.tokenDelayMs = 200
  await hangUp(standIn.url, '/api/generate', { ...GENERATE, stream: false }, 30)
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal((await standIn.waitForAbort()).path, '/api/generate', 'an earlier abort is kept')
  standIn.options.tokenDelayMs = 0
  standIn.options.pullTickMs = 200
  await hangUp(standIn.url, '/api/pull', { model: 'x' }, 30)
  t.equal((await standIn.waitForAbort()).path, '/api/pull', 'abort during a pull')
  standIn.options.pullTickMs = 0
  standIn.options.splitWrites = true
  standIn.options.tokens = Array.from({ length: 200 }, () => 'x')
  await hangUp(standIn.url, '/api/chat', CHAT, 30)
  t.equal((await standIn.waitForAbort()).path, '/api/chat', 'abort between split writes')
  t.equal(standIn.aborted.length, 4)
  await t.rejects(standIn.waitForAbort(30), { message: 'no aborted request within 30 ms' })
  const finished = await send(standIn.url, 'GET', '/api/tags')
  t.equal(finished.status, 200)
  t.equal(standIn.aborted.length, 4, 'finished requests are not aborts')
})

t.test('a client that hangs up while sending the body is an abort too', async (t) => {
  const { standIn } = await setup(t)
  const waiting = standIn.waitForAbort(1000)
  const req = request(`${standIn.url}/api/chat`, {
    method: 'POST',
    agent: false,
    headers: { 'Content-Length': '1000' },
  })
  req.on('error', () => {})
  req.write('{"model":')
  setTimeout(() => req.destroy(), 30)
  const aborted = await waiting
  t.equal(aborted.path, '/api/chat')
  t.equal(aborted.rawBody, '', 'the body never completed')
})

t.test('close() ends open streams, pending waits and timers', async (t) => {
  const standIn: OllamaStandIn = await startOllamaStandIn({ tokenDelayMs: 5000 })
  const pending = standIn.waitForAbort(5000)
  const streaming = new Promise<string>((resolve) => {
    const req = request(`${standIn.url}/api/chat`, { method: 'POST', agent: false }, (res) => {
      res.once('data', () => resolve('first line'))
      res.on('error', () => {})
    })
    req.on('error', () => {})
    req.end(JSON.stringify(CHAT))
  })
  t.equal(await streaming, 'first line')
  const started = performance.now()
  await standIn.close()
  t.ok(performance.now() - started < 1000, 'close() does not wait for the 5 s token delay')
  await t.rejects(pending, { message: 'stand-in closed' })
  t.same(standIn.aborted, [], 'closing is not a client abort')
  await t.rejects(send(standIn.url, 'GET', '/'), { code: 'ECONNREFUSED' })
})

t.test('thinking and tool calls come as Ollama writes them', async (t) => {
  const thinker = {
    ...DEFAULT_MODELS[0],
    name: 'qwen3:latest',
    capabilities: ['completion', 'tools', 'thinking'],
  } as StandInModel
  const plain = { ...thinker, name: 'plain:latest', capabilities: undefined }
  const { post, standIn } = await setup(t, {
    models: [thinker, plain],
    tokens: ['Blue', '.'],
    thinkingTokens: ['Light', ' <scatters>'],
    toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris', days: 2 } }],
  })
  const tools = [{ type: 'function', function: { name: 'get_weather', parameters: {} } }]
  const messages = [{ role: 'user', content: 'hi' }]

  // A thinking model thinks by default, then answers; each piece on its own line.
  const streamed = ndjson(t, await post('/api/chat', { model: 'qwen3', messages }))
  t.same(
    streamed.map((line) => line.message),
    [
      { role: 'assistant', content: '', thinking: 'Light' },
      { role: 'assistant', content: '', thinking: ' <scatters>' },
      { role: 'assistant', content: 'Blue' },
      { role: 'assistant', content: '.' },
      { role: 'assistant', content: '' },
    ],
  )
  t.match(streamed.at(-1), { done: true, eval_count: 4 })
  const whole = single(t, await post('/api/chat', { model: 'qwen3', messages, stream: false }))
  t.same(whole.message, { role: 'assistant', content: 'Blue.', thinking: 'Light <scatters>' })
  const quiet = single(
    t,
    await post('/api/chat', { model: 'qwen3', messages, stream: false, think: false }),
  )
  t.same(quiet.message, { role: 'assistant', content: 'Blue.' }, 'think:false: no thinking')

  // With tools offered, the calls come whole in one chunk with content "", then done.
  const called = ndjson(
    t,
    await post('/api/chat', { model: 'qwen3', messages, tools, think: false }),
  )
  t.equal(called.length, 2)
  const raw = await post('/api/chat', { model: 'qwen3', messages, tools, think: 'high' })
  t.match(
    raw.text.split('\n')[2],
    /^\{"model":"qwen3","created_at":"[^"]+","message":\{"role":"assistant","content":"","tool_calls":\[\{"id":"call_[a-z0-9]{8}","function":\{"index":0,"name":"get_weather","arguments":\{"city":"Paris","days":2\}\}\}\]\},"done":false\}$/,
    'Go order: role, content, tool_calls; id, then function{index, name, arguments}',
  )
  const gathered = single(
    t,
    await post('/api/chat', { model: 'qwen3', messages, tools, stream: false }),
  )
  t.same(gathered.message, {
    role: 'assistant',
    content: '',
    thinking: 'Light <scatters>',
    tool_calls: [
      called[0]?.message && (called[0].message as { tool_calls: unknown[] }).tool_calls[0],
    ],
  })
  // No tool calls configured: the model answers in text even when offered tools.
  standIn.options.toolCalls = undefined
  const text = single(
    t,
    await post('/api/chat', { model: 'qwen3', messages, tools, stream: false, think: false }),
  )
  t.same(text.message, { role: 'assistant', content: 'Blue.' })

  // Generate thinks in a top-level `thinking`, before `response`'s neighbours in Go order.
  const gen = await post('/api/generate', { model: 'qwen3', prompt: 'x' })
  t.match(
    gen.text.split('\n')[0],
    /^\{"model":"qwen3","created_at":"[^"]+","response":"","thinking":"Light","done":false\}$/,
  )
  const genWhole = single(
    t,
    await post('/api/generate', { model: 'qwen3', prompt: 'x', stream: false }),
  )
  t.match(genWhole, { response: 'Blue.', thinking: 'Light <scatters>', done: true })

  // `think` on a model that cannot, or tools on a model without the capability: Ollama's 400s.
  for (const [path, body, error] of [
    ['/api/chat', { model: 'plain', messages, think: true }, '"plain" does not support thinking'],
    [
      '/api/generate',
      { model: 'plain', prompt: 'x', think: 'low' },
      '"plain" does not support thinking',
    ],
    [
      '/api/chat',
      { model: 'Plain', messages, tools: [{ type: 'function' }] },
      'registry.ollama.ai/library/plain:latest does not support tools',
    ],
  ] as const) {
    t.same(single(t, await post(path, body), 400), { error }, error)
  }
  t.same(single(t, await post('/api/chat', { model: 'plain', messages, tools: 'x' }), 400), {
    error: 'json: cannot unmarshal string into Go struct field ChatRequest.tools of type api.Tools',
  })
  // think:false and think:null are "not set" on any model.
  for (const think of [false, null]) {
    t.equal(
      single(t, await post('/api/chat', { model: 'plain', messages, stream: false, think })).done,
      true,
    )
  }
})

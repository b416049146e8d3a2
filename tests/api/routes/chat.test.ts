import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Ollama } from 'ollama'
import t from 'tap'
import { request } from 'undici'
import type { ChatCompletion } from '../../../services/api/src/schemas/chat.ts'
import { buildTestApp, listenTestApp } from '../../helpers/api.ts'
import { ndjson, standIn, WEATHER_TOOLS } from '../../helpers/ollama.ts'
import { DEFAULT_MODELS, type StandInModel } from '../../helpers/ollama-stand-in.ts'

const messages = [{ role: 'user', content: 'Why is the sky blue?' }]

t.test(
  'a non-streamed chat answers the chat.completion shape with usage and sources',
  async (t) => {
    const ollama = await standIn(t)
    const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
    const res = await app.inject({ method: 'POST', url: '/api/chat', payload: { messages } })
    t.equal(res.statusCode, 200)
    t.match(res.headers['content-type'], /^application\/json/)
    const body = res.json()
    t.match(body, {
      id: /^chatcmpl-/,
      object: 'chat.completion',
      model: 'llama3.2',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'The sky is blue.' },
          finish_reason: 'stop',
        },
      ],
      sources: [],
    })
    t.ok(Math.abs(body.created - Date.now() / 1000) < 60, 'created is unix seconds')
    const eval_count = 5
    t.equal(body.usage.completion_tokens, eval_count)
    t.ok(body.usage.prompt_tokens > 0)
    t.equal(body.usage.total_tokens, body.usage.prompt_tokens + body.usage.completion_tokens)
    // What Ollama was asked: the configured model, stream false, our own fields removed.
    const sent = ollama.requests.at(-1)
    t.equal(sent?.path, '/api/chat')
    t.same(sent?.body, { messages, model: 'llama3.2', stream: false })
  },
)

t.test('fields Ollama knows are passed through; the model can be chosen', async (t) => {
  const ollama = await standIn(t)
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url, CHAT_MODEL: 'other' })
  const payload = {
    model: 'llama3.2:latest',
    messages,
    options: { temperature: 0.1, mirostat: 2 },
    keep_alive: '10m',
    format: 'json',
    think: false,
    rag: { enabled: true, top_k: 3 },
  }
  const res = await app.inject({ method: 'POST', url: '/api/chat', payload })
  t.equal(res.statusCode, 200)
  const { rag: _rag, ...forwarded } = payload
  t.same(ollama.requests.at(-1)?.body, { ...forwarded, stream: false })
})

t.test(
  'a streamed chat: sources first, tokens as Ollama wrote them, then done with usage',
  async (t) => {
    const ollama = await standIn(t)
    const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
    const res = await app.inject({
      method: 'POST',
      url: '/api/chat',
      payload: { messages, stream: true },
    })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['content-type'], 'application/x-ndjson')
    t.equal(res.headers['cache-control'], 'no-cache')
    t.equal(res.headers['content-encoding'], undefined)
    const lines = ndjson(res.body)
    t.match(lines[0], { sources: [], conversation_id: /^conv_/ })
    const tokens = lines.slice(1, -1)
    t.equal(tokens.length, 5)
    for (const line of tokens) {
      t.match(line, { model: 'llama3.2', message: { role: 'assistant' }, done: false })
      t.type(line.created_at, 'string')
    }
    t.equal(
      tokens.map((l) => (l.message as { content: string }).content).join(''),
      'The sky is blue.',
    )
    const last = lines.at(-1) as Record<string, unknown>
    t.match(last, { done: true, done_reason: 'stop', usage: { completion_tokens: 5 } })
    t.match(ollama.requests.at(-1)?.body, { stream: true })
  },
)

t.test('an invalid body is refused with a message naming the field', async (t) => {
  const ollama = await standIn(t)
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const cases: Array<[unknown, RegExp]> = [
    [{}, /body must have required property 'messages'/],
    [{ messages: [] }, /body\/messages must NOT have fewer than 1 items/],
    [{ messages: [{ role: 'wizard', content: 'x' }] }, /body\/messages\/0\/role/],
    [
      { messages: [{ role: 'user', content: ['parts'] }] },
      /body\/messages\/0\/content must be string/,
    ],
    [{ messages, rag: { top_k: 0 } }, /body\/rag\/top_k must be >= 1/],
    [{ messages, stream: 'yes' }, /body\/stream must be boolean/],
  ]
  for (const [payload, message] of cases) {
    const res = await app.inject({ method: 'POST', url: '/api/chat', payload: payload as object })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.equal(res.json().error, 'validation_failed')
    t.match(res.json().message, message)
  }
  t.equal(ollama.requests.length, 0, 'nothing invalid reaches Ollama')
})

t.test('an unknown model is a 404 carrying the reason Ollama gave', async (t) => {
  const ollama = await standIn(t)
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  for (const stream of [false, true]) {
    const res = await app.inject({
      method: 'POST',
      url: '/api/chat',
      payload: { model: 'nope', messages, stream },
    })
    t.equal(res.statusCode, 404)
    t.same(res.json(), {
      error: 'model_not_found',
      message: "model 'nope' not found",
      statusCode: 404,
    })
  }
})

t.test('Ollama failing before any output maps to a clear status', async (t) => {
  const ollama = await standIn(t, { failBeforeOutput: { status: 500, error: 'out of memory' } })
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await app.inject({ method: 'POST', url: '/api/chat', payload: { messages } })
  t.equal(res.statusCode, 502)
  t.same(res.json(), {
    error: 'ollama_error',
    message: 'Ollama failed: out of memory',
    statusCode: 502,
  })
  ollama.options.failBeforeOutput = { status: 400, error: '"llama3.2" does not support thinking' }
  const bad = await app.inject({
    method: 'POST',
    url: '/api/chat',
    payload: { messages, think: true },
  })
  t.equal(bad.statusCode, 400)
  t.match(bad.json(), { error: 'ollama_error', message: /does not support thinking/ })
})

t.test('Ollama unreachable is a 503 naming OLLAMA_URL', async (t) => {
  const app = await buildTestApp(t, { OLLAMA_URL: 'http://127.0.0.1:1' })
  for (const stream of [false, true]) {
    const res = await app.inject({
      method: 'POST',
      url: '/api/chat',
      payload: { messages, stream },
    })
    t.equal(res.statusCode, 503)
    t.equal(res.json().error, 'ollama_unavailable')
    t.match(res.json().message, /OLLAMA_URL=http:\/\/127\.0\.0\.1:1\b/)
  }
})

t.test('a mid-stream error ends the stream with an {error, message} line', async (t) => {
  const ollama = await standIn(t, { failAfterTokens: { count: 2, error: 'model crashed' } })
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await app.inject({
    method: 'POST',
    url: '/api/chat',
    payload: { messages, stream: true },
  })
  t.equal(res.statusCode, 200)
  const lines = ndjson(res.body)
  t.equal(lines.length, 4, 'sources, two tokens, the error')
  t.same(lines.at(-1), { error: 'ollama_error', message: 'model crashed' })
  t.notOk(lines.some((l) => l.done === true))
})

t.test('a stream that stops early gains an error line instead of ending silently', async (t) => {
  const ollama = await standIn(t, { truncateAfterTokens: 3 })
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await app.inject({
    method: 'POST',
    url: '/api/chat',
    payload: { messages, stream: true },
  })
  const lines = ndjson(res.body)
  t.equal(lines.length, 5)
  t.match(lines.at(-1), {
    error: 'ollama_stream_interrupted',
    message: /stopped before it was complete/,
  })

  ollama.options.truncateMode = 'destroy'
  const crashed = await app.inject({
    method: 'POST',
    url: '/api/chat',
    payload: { messages, stream: true },
  })
  t.match(ndjson(crashed.body).at(-1), { error: 'ollama_stream_interrupted' })
})

t.test('thinking and tool calls reach a client of the gateway, streamed or not', async (t) => {
  const thinker: StandInModel = {
    ...(DEFAULT_MODELS[0] as StandInModel),
    name: 'qwen3:latest',
    capabilities: ['completion', 'tools', 'thinking'],
  }
  const ollama = await standIn(t, {
    models: [thinker],
    thinkingTokens: ['Look', ' it up.'],
    toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris', unit: { celsius: true } } }],
  })
  const { url } = await listenTestApp(t, { OLLAMA_URL: ollama.url, CHAT_MODEL: 'qwen3' })
  // The official client sends the body Ollama's own users send: tools, think, stream false.
  const client = new Ollama({ host: url })
  const tools = WEATHER_TOOLS
  const answer = (await client.chat({
    model: 'qwen3',
    messages,
    tools,
    think: true,
  })) as unknown as ChatCompletion
  t.match(ollama.requests.at(-1)?.body, { tools, think: true, stream: false })
  const message = answer.choices[0]?.message
  t.match(message, {
    role: 'assistant',
    content: '',
    thinking: 'Look it up.',
    tool_calls: [
      {
        id: /^call_[a-z0-9]{8}$/,
        function: {
          index: 0,
          name: 'get_weather',
          arguments: { city: 'Paris', unit: { celsius: true } },
        },
      },
    ],
  })
  t.match(answer, { object: 'chat.completion', usage: { completion_tokens: 3 }, sources: [] })

  // Other message fields Ollama returns are kept too (images, tool_name, fields to come).
  ollama.options.toolCalls = undefined
  const plain = await request(`${url}/api/chat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages, think: false }),
  })
  t.same(
    ((await plain.body.json()) as ChatCompletion).choices[0]?.message,
    {
      role: 'assistant',
      content: 'The sky is blue.',
    },
    'no empty fields added',
  )

  // Streamed: the lines are Ollama's own, tool_calls and thinking included.
  ollama.options.toolCalls = [{ name: 'get_weather', arguments: { city: 'Oslo' } }]
  const parts: Array<Record<string, unknown>> = []
  for await (const part of await client.chat({ model: 'qwen3', messages, tools, stream: true })) {
    parts.push(part as unknown as Record<string, unknown>)
  }
  t.match(parts[0], { sources: [], conversation_id: /^conv_/ })
  t.match(
    parts.slice(1, -1).map((part) => part.message),
    [
      { role: 'assistant', content: '', thinking: 'Look' },
      { role: 'assistant', content: '', thinking: ' it up.' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [
          {
            id: /^call_[a-z0-9]{8}$/,
            function: { index: 0, name: 'get_weather', arguments: { city: 'Oslo' } },
          },
        ],
      },
    ],
  )
  t.match(parts.at(-1), { done: true, usage: { completion_tokens: 3 } })
})

t.test('an extra message field from Ollama is kept in the non-streamed answer', async (t) => {
  // A tiny Ollama that answers with fields the stand-in does not produce.
  const server = createServer((req, res) => {
    req.resume()
    res.setHeader('content-type', 'application/json; charset=utf-8')
    res.end(
      JSON.stringify({
        model: 'm',
        created_at: '2025-01-01T00:00:00Z',
        message: {
          role: 'assistant',
          content: 'x',
          images: ['aGk='],
          tool_name: 'get_weather',
          future_field: { a: [1] },
        },
        done: true,
        done_reason: 'stop',
        prompt_eval_count: 1,
        eval_count: 1,
      }),
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  const { url } = await listenTestApp(t, {
    OLLAMA_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
  })
  const res = await request(`${url}/api/chat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages }),
  })
  t.equal(res.statusCode, 200)
  t.same(((await res.body.json()) as ChatCompletion).choices[0]?.message, {
    role: 'assistant',
    content: 'x',
    images: ['aGk='],
    tool_name: 'get_weather',
    future_field: { a: [1] },
  })
})

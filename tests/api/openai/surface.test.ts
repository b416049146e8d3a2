import OpenAI from 'openai'
import t from 'tap'
import { ADMIN_KEY, listenTestApp, READER_KEY } from '../../helpers/api.ts'
import { silentOllama, standIn } from '../../helpers/ollama.ts'

// The /v1 surface without an index (grounding off): models, embeddings, keys and every error
// status in OpenAI's shape, through the official openai SDK and raw HTTP over a real socket.

// biome-ignore lint/suspicious/noExplicitAny: a test reads whatever the wire carried
type Json = Record<string, any>

const client = (url: string, apiKey = READER_KEY) =>
  new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 })

async function raw(
  url: string,
  init: { method?: string; body?: string; key?: string; type?: string; origin?: string } = {},
): Promise<{ status: number; json: Json; headers: Headers }> {
  const headers: Record<string, string> = {}
  if (init.key !== undefined) headers.authorization = `Bearer ${init.key}`
  if (init.type !== undefined) headers['content-type'] = init.type
  if (init.origin !== undefined) headers.origin = init.origin
  const res = await fetch(url, { method: init.method ?? 'POST', headers, body: init.body })
  const text = await res.text()
  return { status: res.status, json: JSON.parse(text) as Json, headers: res.headers }
}

/** OpenAI's error shape: these four fields and nothing else. */
const openAIError = (type: string, code: string | null) => ({
  error: { message: String, type, code },
})
const shapeOf = (json: Json) => [Object.keys(json), Object.keys(json.error ?? {}).sort()]
const OPENAI_SHAPE = [['error'], ['code', 'message', 'param', 'type']]

t.test('the /v1 surface over a real socket', async (t) => {
  const ollama = await standIn(t, {})
  const { url } = await listenTestApp(t, {
    OLLAMA_URL: ollama.url,
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    BODY_LIMIT: '4096',
  })
  const openai = client(url)

  t.test('models: listed as OpenAI lists them, and one by name', async (t) => {
    const list = await openai.models.list()
    const ids = list.data.map((m) => m.id)
    t.ok(ids.includes('llama3.2:latest'), ids.join(', '))
    t.match(list.data[0], { id: String, object: 'model', created: Number, owned_by: 'ollama' })
    t.ok((list.data[0]?.created ?? 0) > 1_600_000_000, 'created is unix seconds')

    const one = await openai.models.retrieve('llama3.2')
    t.match(one, { id: 'llama3.2:latest', object: 'model', owned_by: 'ollama' })
    t.equal((await openai.models.retrieve('LLAMA3.2:latest')).id, 'llama3.2:latest')

    const missing = await openai.models.retrieve('no-such-model').catch((e: unknown) => e)
    t.ok(missing instanceof OpenAI.NotFoundError, String(missing))
    t.equal((missing as InstanceType<typeof OpenAI.NotFoundError>).code, 'model_not_found')
    // A namespaced name reaches the route whole, URL-encoded by the SDK.
    const namespaced = await openai.models.retrieve('hf.co/org/model:q4').catch((e: unknown) => e)
    t.match((namespaced as Error).message, /'hf\.co\/org\/model:q4' is not installed/)
    const plain = await raw(`${url}/v1/models/hf.co%2Forg%2Fmodel`, {
      method: 'GET',
      key: READER_KEY,
    })
    t.equal(plain.status, 404)
    t.match(plain.json, openAIError('invalid_request_error', 'model_not_found'))
    t.match(plain.json.error.message, /'hf\.co\/org\/model'/)
  })

  t.test('embeddings: floats, and base64 as the SDK asks for by default', async (t) => {
    const floats = await openai.embeddings.create({
      model: 'nomic-embed-text',
      input: ['deploy billing', 'rotate passwords'],
      encoding_format: 'float',
    })
    t.match(floats, { object: 'list', model: 'nomic-embed-text', usage: { prompt_tokens: Number } })
    t.equal(floats.data.length, 2)
    t.same(
      floats.data.map((d) => [d.object, d.index]),
      [
        ['embedding', 0],
        ['embedding', 1],
      ],
    )
    t.equal(floats.usage.total_tokens, floats.usage.prompt_tokens)
    t.ok(floats.usage.prompt_tokens > 0)
    const vector = floats.data[0]?.embedding as number[]
    t.equal(vector.length, 8, 'the model’s dimension')

    // No encoding_format: the SDK asks for base64 and decodes the float32 bytes itself.
    const before = ollama.requests.length
    const decoded = await openai.embeddings.create({
      model: 'nomic-embed-text',
      input: 'deploy billing',
    })
    const sent = ollama.requests.slice(before).find((r) => r.path === '/api/embed')
    t.same(
      (sent?.body as Json | undefined)?.input,
      ['deploy billing'],
      'one text is a list of one for Ollama',
    )
    const got = decoded.data[0]?.embedding as number[]
    t.equal(got.length, vector.length)
    got.forEach((value, i) => {
      t.equal(value, Math.fround(vector[i] as number), `component ${i} as float32`)
    })

    const b64 = await openai.embeddings.create({
      model: 'nomic-embed-text',
      input: 'deploy billing',
      encoding_format: 'base64',
    })
    const text = b64.data[0]?.embedding as unknown as string
    t.type(text, 'string', 'explicit base64 stays base64')
    t.equal(Buffer.from(text, 'base64').length, vector.length * 4)

    const shorter = await openai.embeddings.create({
      model: 'nomic-embed-text',
      input: 'deploy billing',
      encoding_format: 'float',
      dimensions: 4,
    })
    t.equal(shorter.data[0]?.embedding.length, 4, 'dimensions reach Ollama')

    const tokens = await openai.embeddings
      .create({ model: 'nomic-embed-text', input: [1, 2, 3] })
      .catch((e: unknown) => e)
    t.ok(tokens instanceof OpenAI.BadRequestError)
    t.match((tokens as Error).message, /token arrays are not supported/)
    t.equal((tokens as InstanceType<typeof OpenAI.BadRequestError>).param, 'input')

    const unknown = await openai.embeddings
      .create({ model: 'no-such-embedder', input: 'x' })
      .catch((e: unknown) => e)
    t.ok(unknown instanceof OpenAI.NotFoundError, String(unknown))

    const empty = await raw(`${url}/v1/embeddings`, {
      key: READER_KEY,
      type: 'application/json',
      body: JSON.stringify({ model: 'nomic-embed-text', input: '' }),
    })
    t.equal(empty.status, 400)
    t.match(empty.json, openAIError('invalid_request_error', 'validation_failed'))
  })

  t.test('keys: none or a wrong one is a 401 AuthenticationError', async (t) => {
    for (const key of ['wrong-key-0123456789abcdef']) {
      const err = await client(url, key)
        .models.list()
        .catch((e: unknown) => e)
      t.ok(err instanceof OpenAI.AuthenticationError, String(err))
      const auth = err as InstanceType<typeof OpenAI.AuthenticationError>
      t.equal(auth.status, 401)
      t.equal(auth.code, 'invalid_api_key')
      t.notMatch(JSON.stringify(auth.error), key, 'the key is not echoed')
    }
    const chat = await client(url, 'wrong-key-0123456789abcdef')
      .chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e)
    t.ok(chat instanceof OpenAI.AuthenticationError)
    const none = await raw(`${url}/v1/models`, { method: 'GET' })
    t.equal(none.status, 401)
    t.match(none.json, openAIError('invalid_request_error', 'invalid_api_key'))
    t.same(shapeOf(none.json), OPENAI_SHAPE)
    t.match(none.headers.get('www-authenticate'), /^Bearer/)
    const admin = await client(url, ADMIN_KEY).models.list()
    t.ok(admin.data.length > 0, 'an admin key reads too')
  })

  t.test('bad bodies: 400 in OpenAI’s shape, naming the field', async (t) => {
    const chat = (body: unknown) =>
      raw(`${url}/v1/chat/completions`, {
        key: READER_KEY,
        type: 'application/json',
        body: JSON.stringify(body),
      })
    const hi = [{ role: 'user', content: 'hi' }]
    const cases: Array<[string, unknown, string | null]> = [
      ['no model', { messages: hi }, 'model'],
      ['no messages', { model: 'llama3.2', messages: [] }, 'messages'],
      [
        'an unknown role',
        { model: 'llama3.2', messages: [{ role: 'robot', content: 'x' }] },
        'messages[0].role',
      ],
      [
        'an image part',
        {
          model: 'llama3.2',
          messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }],
        },
        'messages[0].content[0].image_url.url',
      ],
      ['two choices', { model: 'llama3.2', messages: hi, n: 2 }, 'n'],
      ['a hot temperature', { model: 'llama3.2', messages: hi, temperature: 'hot' }, 'temperature'],
      [
        'an unknown rag field',
        { model: 'llama3.2', messages: hi, rag: { space: ['ENG'] } },
        'rag.space',
      ],
    ]
    for (const [name, body, param] of cases) {
      const res = await chat(body)
      t.equal(res.status, 400, name)
      t.match(res.json, openAIError('invalid_request_error', 'validation_failed'), name)
      t.equal(res.json.error.param, param, `${name}: ${res.json.error.message}`)
      t.same(shapeOf(res.json), OPENAI_SHAPE, 'nothing but the error')
    }
    const sdk = await openai.chat.completions
      .create({ model: 'llama3.2', messages: [] })
      .catch((e: unknown) => e)
    t.ok(sdk instanceof OpenAI.BadRequestError, String(sdk))

    const notJson = await raw(`${url}/v1/chat/completions`, {
      key: READER_KEY,
      type: 'application/json',
      body: '{"model":',
    })
    t.equal(notJson.status, 400)
    t.match(notJson.json, openAIError('invalid_request_error', 'validation_failed'))
    t.equal(notJson.json.error.param, null)
    const noBody = await raw(`${url}/v1/chat/completions`, { key: READER_KEY })
    t.equal(noBody.status, 400)
    t.match(noBody.json, openAIError('invalid_request_error', 'missing_request_body'))

    for (const path of ['/v1/chat/completions', '/v1/embeddings']) {
      const big = await raw(`${url}${path}`, {
        key: READER_KEY,
        type: 'application/json',
        body: JSON.stringify({ model: 'llama3.2', input: 'x'.repeat(8000) }),
      })
      t.equal(big.status, 413, path)
      t.match(big.json, openAIError('invalid_request_error', 'payload_too_large'))
      const xml = await raw(`${url}${path}`, {
        key: READER_KEY,
        type: 'application/xml',
        body: '<x/>',
      })
      t.equal(xml.status, 415, path)
      t.match(xml.json, openAIError('invalid_request_error', 'unsupported_media_type'))
    }
    const embed = await raw(`${url}/v1/embeddings`, {
      key: READER_KEY,
      type: 'application/json',
      body: JSON.stringify({ input: 'x' }),
    })
    t.equal(embed.status, 400)
    t.equal(embed.json.error.param, 'model')
  })

  t.test('a page of another site: 403 in OpenAI’s shape on every route', async (t) => {
    for (const [method, path, body] of [
      ['GET', '/v1/models', undefined],
      ['GET', '/v1/models/llama3.2', undefined],
      ['POST', '/v1/chat/completions', JSON.stringify({ model: 'llama3.2', messages: [] })],
      ['POST', '/v1/embeddings', JSON.stringify({ model: 'nomic-embed-text', input: 'x' })],
    ] as const) {
      const res = await raw(`${url}${path}`, {
        method,
        body,
        key: READER_KEY,
        type: body === undefined ? undefined : 'application/json',
        origin: 'https://evil.example',
      })
      t.equal(res.status, 403, `${method} ${path}`)
      t.match(res.json, openAIError('invalid_request_error', 'origin_not_allowed'))
      t.same(shapeOf(res.json), OPENAI_SHAPE)
    }
  })

  t.test('an unknown /v1 path is a 404 in OpenAI’s shape', async (t) => {
    const res = await raw(`${url}/v1/completions`, {
      key: READER_KEY,
      type: 'application/json',
      body: '{}',
    })
    t.equal(res.status, 404)
    t.match(res.json, openAIError('invalid_request_error', 'not_found'))
    t.match(res.json.error.message, /\/v1\/chat\/completions/)
    const api = await raw(`${url}/api/nope`, {
      key: READER_KEY,
      type: 'application/json',
      body: '{}',
    })
    t.match(
      api.json,
      { error: 'not_found', statusCode: 404 },
      'the rest of the api keeps its shape',
    )
  })

  t.test('Ollama failing: 502 and 503, as the SDK’s InternalServerError', async (t) => {
    ollama.options.failBeforeOutput = { status: 500, error: 'model runner crashed' }
    t.teardown(() => {
      ollama.options.failBeforeOutput = undefined
    })
    const chat = await openai.chat.completions
      .create({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e)
    t.ok(chat instanceof OpenAI.InternalServerError, String(chat))
    const failed = chat as InstanceType<typeof OpenAI.InternalServerError>
    t.equal(failed.status, 502)
    t.match(failed.error, {
      message: /model runner crashed/,
      type: 'server_error',
      code: 'ollama_error',
    })
    const embed = await openai.embeddings
      .create({ model: 'nomic-embed-text', input: 'x' })
      .catch((e: unknown) => e)
    t.equal((embed as InstanceType<typeof OpenAI.InternalServerError>).status, 502)

    // OLLAMA_URL naming something that is not Ollama (a path it lacks): 502, saying so.
    const { url: wrong } = await listenTestApp(t, {
      API_KEYS: READER_KEY,
      OLLAMA_URL: `${ollama.url}/not-ollama`,
    })
    const tags = (await client(wrong)
      .models.list()
      .catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>
    t.equal(tags.status, 502, String(tags))
    t.match(tags.error, {
      type: 'server_error',
      code: 'ollama_error',
      message: /is it an Ollama server/,
    })

    // OLLAMA_URL's own credential never reaches a client, not even in a 503.
    const { url: down } = await listenTestApp(t, {
      API_KEYS: READER_KEY,
      OLLAMA_URL: 'http://gateway:s3cret-pass@127.0.0.1:1/?token=s3cret-token',
    })
    const gone = client(down)
    for (const call of [
      () => gone.models.list(),
      () => gone.models.retrieve('llama3.2'),
      () => gone.embeddings.create({ model: 'nomic-embed-text', input: 'x' }),
      () =>
        gone.chat.completions.create({
          model: 'llama3.2',
          messages: [{ role: 'user', content: 'hi' }],
        }),
      () =>
        gone.chat.completions.create({
          model: 'llama3.2',
          messages: [{ role: 'user', content: 'hi' }],
          stream: true,
        }),
    ]) {
      const err = (await call().catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>
      t.equal(err.status, 503, String(err))
      t.match(err.error, {
        type: 'server_error',
        code: 'ollama_unavailable',
        message: /OLLAMA_URL/,
      })
      t.notMatch(JSON.stringify(err.error), /s3cret/, 'no secret in the error')
    }
  })

  t.test('an Ollama that never answers: 504 within OLLAMA_RESPONSE_TIMEOUT_MS', async (t) => {
    const { url: stuck } = await listenTestApp(t, {
      API_KEYS: READER_KEY,
      OLLAMA_URL: await silentOllama(t),
      OLLAMA_RESPONSE_TIMEOUT_MS: '300',
    })
    for (const call of [
      () => client(stuck).models.list(),
      () => client(stuck).models.retrieve('llama3.2'),
    ]) {
      const err = (await call().catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>
      t.ok(err instanceof OpenAI.APIError, String(err))
      t.equal(err.status, 504, String(err))
      t.match(err.error, {
        type: 'server_error',
        code: 'ollama_timeout',
        message: /OLLAMA_RESPONSE_TIMEOUT_MS/,
      })
    }
  })

  t.test('a model Ollama does not have: NotFoundError (not grounded)', async (t) => {
    const err = await openai.chat.completions
      .create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e)
    t.ok(err instanceof OpenAI.NotFoundError, String(err))
    t.equal((err as InstanceType<typeof OpenAI.NotFoundError>).code, 'model_not_found')
  })

  t.test('ungrounded: a plain completion with the options mapped', async (t) => {
    const before = ollama.requests.length
    const res = await openai.chat.completions.create({
      model: 'llama3.2',
      messages: [
        { role: 'developer', content: 'Be brief.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Why is' },
            { type: 'text', text: 'the sky blue?' },
          ],
        },
      ],
      temperature: 0.2,
      top_p: 0.5,
      max_tokens: 64,
      stop: 'END',
      seed: 7,
      frequency_penalty: 0.1,
      presence_penalty: 0.3,
      response_format: { type: 'json_object' },
      user: 'someone',
      logprobs: false,
      store: false,
    })
    t.match(res, {
      object: 'chat.completion',
      model: 'llama3.2',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'The sky is blue.' },
          finish_reason: 'stop',
        },
      ],
      usage: { prompt_tokens: Number, completion_tokens: Number, total_tokens: Number },
    })
    t.match(res.id, /^chatcmpl-/)
    const extra = res as unknown as Json
    t.same(extra.sources, [], 'RAG_ENABLED=false: no sources')
    t.equal(extra.retrieval, undefined)
    t.equal(extra.grounded, false)
    t.match(extra.grounding_note, /Grounding is off/, 'it says why it is not grounded')
    const sent = ollama.requests.slice(before).find((r) => r.path === '/api/chat')?.body as Json
    t.same(sent.messages, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Why is\nthe sky blue?' },
    ])
    t.same(sent.options, {
      temperature: 0.2,
      top_p: 0.5,
      num_predict: 64,
      stop: ['END'],
      seed: 7,
      frequency_penalty: 0.1,
      presence_penalty: 0.3,
    })
    t.equal(sent.format, 'json')
    t.equal(sent.stream, false)
    t.notOk('user' in sent || 'store' in sent || 'logprobs' in sent, 'OpenAI-only fields stay here')

    const nulls = await raw(`${url}/v1/chat/completions`, {
      key: READER_KEY,
      type: 'application/json',
      body: JSON.stringify({
        model: 'llama3.2',
        messages: [{ role: 'user', content: 'hi' }],
        temperature: null,
        max_tokens: 5,
        max_completion_tokens: 9,
        stop: ['A', 'B'],
        stream: null,
        stream_options: null,
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'x', schema: { type: 'object' } },
        },
        tools: [{ type: 'function', function: { name: 'f' } }],
      }),
    })
    t.equal(nulls.status, 200, JSON.stringify(nulls.json))
    const second = ollama.requests.filter((r) => r.path === '/api/chat').at(-1)?.body as Json
    t.same(second.options, { num_predict: 9, stop: ['A', 'B'] }, 'null is absent')
    t.same(second.format, { type: 'object' })
    t.notOk('tools' in second, 'tools are ignored')
  })
})

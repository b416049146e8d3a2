import t from 'tap'
import { buildTestApp } from '../../helpers/api.ts'
import { ndjson, standIn } from '../../helpers/ollama.ts'

t.test("a non-streamed generate answers Ollama's object untouched", async (t) => {
  const ollama = await standIn(t)
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await app.inject({ method: 'POST', url: '/api/generate', payload: { prompt: 'hi' } })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  t.match(res.json(), {
    model: 'llama3.2',
    response: 'The sky is blue.',
    done: true,
    done_reason: 'stop',
    eval_count: 5,
  })
  t.type(res.json().context, Array)
  t.same(ollama.requests.at(-1)?.body, { prompt: 'hi', model: 'llama3.2', stream: false })
})

t.test('system, options and unknown Ollama fields are passed through', async (t) => {
  const ollama = await standIn(t)
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const payload = {
    model: 'llama3.2',
    prompt: 'hi',
    system: 'be brief',
    options: { num_predict: 10 },
    raw: false,
    truncate: true,
  }
  const res = await app.inject({ method: 'POST', url: '/api/generate', payload })
  t.equal(res.statusCode, 200)
  t.same(ollama.requests.at(-1)?.body, { ...payload, stream: false })
})

t.test('a streamed generate relays every line and ends with done', async (t) => {
  const ollama = await standIn(t, { tokens: ['a', 'b', 'c'] })
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await app.inject({
    method: 'POST',
    url: '/api/generate',
    payload: { prompt: 'hi', stream: true },
  })
  t.equal(res.headers['content-type'], 'application/x-ndjson')
  const lines = ndjson(res.body)
  t.same(
    lines.map((l) => l.response),
    ['a', 'b', 'c', ''],
  )
  t.match(lines.at(-1), { done: true, done_reason: 'stop', eval_count: 3 })
})

t.test('an empty prompt loads the model: one object, still a valid NDJSON stream', async (t) => {
  const ollama = await standIn(t)
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await app.inject({
    method: 'POST',
    url: '/api/generate',
    payload: { prompt: '', stream: true },
  })
  const lines = ndjson(res.body)
  t.equal(lines.length, 1)
  t.match(lines[0], { done: true, done_reason: 'load' })
})

t.test('errors: validation, unknown model, mid-stream failure', async (t) => {
  const ollama = await standIn(t)
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const missing = await app.inject({ method: 'POST', url: '/api/generate', payload: {} })
  t.equal(missing.statusCode, 400)
  t.match(missing.json().message, /body must have required property 'prompt'/)

  const unknown = await app.inject({
    method: 'POST',
    url: '/api/generate',
    payload: { model: 'ghost', prompt: 'x' },
  })
  t.equal(unknown.statusCode, 404)
  t.same(unknown.json(), {
    error: 'model_not_found',
    message: "model 'ghost' not found",
    statusCode: 404,
  })

  ollama.options.failAfterTokens = {
    count: 1,
    error: 'an error was encountered while running the model',
  }
  const broken = await app.inject({
    method: 'POST',
    url: '/api/generate',
    payload: { prompt: 'x', stream: true },
  })
  const lines = ndjson(broken.body)
  t.equal(lines.length, 2)
  t.same(lines[1], {
    error: 'ollama_error',
    message: 'an error was encountered while running the model',
  })
})

import t from 'tap'
import { buildTestApp } from '../../helpers/api.ts'

// /docs lists the OpenAI-compatible operations under the `openai` tag, each with its request
// and response schemas and its errors in OpenAI's shape.

t.test('the OpenAPI document describes /v1', async (t) => {
  const app = await buildTestApp(t)
  const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
  const op = (method: string, path: string) => doc.paths[path]?.[method]
  const operations = [
    ['post', '/v1/chat/completions', [400, 401, 403, 404, 413, 415, 502, 503]],
    ['get', '/v1/models', [401, 403, 502, 503]],
    ['get', '/v1/models/{model}', [401, 403, 404, 502, 503]],
    ['post', '/v1/embeddings', [400, 401, 403, 404, 413, 415, 502, 503]],
  ] as const
  for (const [method, path, errors] of operations) {
    const operation = op(method, path)
    t.ok(operation, `${method} ${path} is documented`)
    t.same(operation.tags, ['openai'], `${path} is tagged openai`)
    t.ok(operation.summary && operation.description, `${path} says what it does`)
    for (const code of errors) {
      const schema = operation.responses[String(code)].content['application/json'].schema
      t.match(
        schema,
        { properties: { error: { properties: { message: {}, type: {}, param: {}, code: {} } } } },
        `${path} ${code} in OpenAI's error shape`,
      )
    }
  }
  const chat = op('post', '/v1/chat/completions')
  t.match(chat.requestBody.content['application/json'].schema, {
    required: ['model', 'messages'],
    properties: { rag: { type: 'object' }, stream_options: {}, max_completion_tokens: {} },
  })
  t.ok(chat.responses['200'].content['text/event-stream'], 'the stream is documented')
  t.match(chat.responses['200'].content['application/json'].schema, {
    properties: { sources: { type: 'array' }, retrieval: {} },
  })
  t.match(chat.description, /Ignored: tools/)
  t.match(op('get', '/v1/models/{model}').parameters, [{ in: 'path', name: 'model' }])
  t.match(op('post', '/v1/embeddings').requestBody.content['application/json'].schema, {
    required: ['model', 'input'],
    properties: { encoding_format: {} },
  })
})

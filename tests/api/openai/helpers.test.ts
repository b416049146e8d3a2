import t from 'tap'
import {
  finishReasonOf,
  formatOf,
  ollamaOptionsOf,
} from '../../../services/api/src/routes/v1/chat-completions.ts'
import { float32Base64 } from '../../../services/api/src/routes/v1/embeddings.ts'
import {
  paramOf,
  type SchemaError,
  schemaErrorMessage,
  toOpenAIError,
} from '../../../services/api/src/routes/v1/openai-errors.ts'

// The pure mappings behind /v1, one case per rule (the socket tests drive them end to end).

t.test('finish_reason: length when num_predict cut the answer, else stop', async (t) => {
  t.equal(finishReasonOf('length'), 'length')
  for (const reason of ['stop', 'load', undefined]) t.equal(finishReasonOf(reason), 'stop')
})

t.test('response_format as Ollama format', async (t) => {
  t.same(formatOf(undefined), {})
  t.same(formatOf(null as never), {}, 'null, as some clients send it')
  t.same(formatOf({ type: 'text' }), {})
  t.same(formatOf({ type: 'json_object' }), { format: 'json' })
  t.same(formatOf({ type: 'json_schema', json_schema: { schema: { type: 'object' } } }), {
    format: { type: 'object' },
  })
  t.same(formatOf({ type: 'json_schema' }), { format: 'json' }, 'no schema: any JSON')
})

t.test('sampling parameters as Ollama options', async (t) => {
  const base = { model: 'm', messages: [{ role: 'user' as const, content: 'x' }] }
  t.same(ollamaOptionsOf(base), {}, 'nothing set: Ollama’s defaults')
  t.same(ollamaOptionsOf({ ...base, max_tokens: 5 }), { num_predict: 5 })
  t.same(ollamaOptionsOf({ ...base, max_tokens: 5, max_completion_tokens: 7 }), {
    num_predict: 7,
  })
  t.same(ollamaOptionsOf({ ...base, stop: 'END' }), { stop: ['END'] })
  t.same(ollamaOptionsOf({ ...base, stop: ['a', 'b'], seed: 0, temperature: 0 }), {
    stop: ['a', 'b'],
    seed: 0,
    temperature: 0,
  })
})

t.test('base64 embeddings are little-endian float32', async (t) => {
  const text = float32Base64([1, -2.5, 0.1])
  const bytes = Buffer.from(text, 'base64')
  t.equal(bytes.length, 12)
  t.same(
    [0, 4, 8].map((at) => bytes.readFloatLE(at)),
    [1, -2.5, Math.fround(0.1)],
  )
  t.equal(float32Base64([]), '')
})

t.test('the request field a validation message names', async (t) => {
  t.equal(paramOf('body/model is required'), 'model')
  t.equal(paramOf('body/messages/0/role is required'), 'messages[0].role')
  t.equal(
    paramOf('body/messages/0/role must be equal to one of the allowed values'),
    'messages[0].role',
  )
  t.equal(paramOf('body/rag must NOT have additional properties'), 'rag')
  t.equal(paramOf('body/input/12 must be string'), 'input[12]')
  t.equal(paramOf('Body is not JSON: Unexpected end'), null)
})

t.test('the api’s error bodies in OpenAI’s shape', async (t) => {
  t.same(toOpenAIError({ error: 'unauthorized', message: 'no key', statusCode: 401 }), {
    error: {
      message: 'no key',
      type: 'invalid_request_error',
      param: null,
      code: 'invalid_api_key',
    },
  })
  t.same(
    toOpenAIError({ error: 'validation_failed', message: 'body/n must be <= 1', statusCode: 400 }),
    {
      error: {
        message: 'body/n must be <= 1',
        type: 'invalid_request_error',
        param: 'n',
        code: 'validation_failed',
      },
    },
  )
  t.same(toOpenAIError({ error: 'ollama_error', message: 'boom', statusCode: 502 }), {
    error: { message: 'boom', type: 'server_error', param: null, code: 'ollama_error' },
  })
})

t.test('schema errors in plain words: unions say what the value may be', async (t) => {
  const error = (instancePath: string, schemaPath: string, keyword: string, params = {}) =>
    ({ instancePath, schemaPath, keyword, params, message: `fails ${keyword}` }) as SchemaError
  // A union whose branches all want the same type (two kinds of array): said once.
  t.equal(
    schemaErrorMessage(
      [
        error('/input', '#/anyOf/0/type', 'type', { type: 'array' }),
        error('/input', '#/anyOf/1/type', 'type', { type: 'array' }),
        error('/input', '#/anyOf', 'anyOf'),
      ],
      'body',
    ),
    'body/input must be an array',
  )
  // A union nested in a branch the value got into: the inner union is what is explained.
  t.equal(
    schemaErrorMessage(
      [
        error('/a', '#/anyOf/0/type', 'type', { type: 'string' }),
        error('/a/b', '#/anyOf/1/properties/b/anyOf/0/type', 'type', { type: 'integer' }),
        error('/a/b', '#/anyOf/1/properties/b/anyOf/1/const', 'const', { allowedValue: 'x' }),
        error('/a/b', '#/anyOf/1/properties/b/anyOf', 'anyOf'),
        error('/a', '#/anyOf', 'anyOf'),
      ],
      'body',
    ),
    "body/a/b must be an integer or 'x'",
  )
  // The branch that got deepest is reported even when a shallower branch is listed after it.
  t.equal(
    schemaErrorMessage(
      [
        error('/a/0', '#/anyOf/0/items/type', 'type', { type: 'string' }),
        error('/a', '#/anyOf/1/type', 'type', { type: 'null' }),
        error('/a', '#/anyOf', 'anyOf'),
      ],
      'body',
    ),
    'body/a/0 must be a string',
  )
  t.equal(
    schemaErrorMessage([error('/n', '#/properties/n/maximum', 'maximum')], 'body'),
    'body/n fails maximum',
  )
})

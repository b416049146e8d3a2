import {
  ApiEnvSchema,
  AppError,
  authEnabled,
  ConfigError,
  ErrorCode,
  jobId,
  loadApiConfig,
  loadWorkerConfig,
  redactUrl,
} from '@confluence-bot/shared'
import t from 'tap'

t.test('defaults let one machine run with nothing set', async (t) => {
  const config = loadApiConfig({})
  t.equal(config.OLLAMA_URL, 'http://127.0.0.1:11434')
  t.equal(config.REDIS_URL, 'redis://127.0.0.1:6379')
  t.equal(config.LANCEDB_URI, './data/lancedb')
  t.equal(config.PORT, 3000)
  t.equal(config.HOST, '127.0.0.1')
  t.same(config.apiKeys, { readers: [], admins: [], spaces: new Map() })
  t.notOk(authEnabled(config))
  t.ok(Object.isFrozen(config))
  const worker = loadWorkerConfig({})
  t.equal(worker.WORKER_CONCURRENCY, 4)
  t.equal(worker.WORKER_HEALTH_PORT, 3001)
})

t.test('every API setting has a description and a default', async (t) => {
  for (const [name, schema] of Object.entries(ApiEnvSchema.properties)) {
    const s = schema as { description?: string; default?: unknown }
    t.ok(s.description, `${name} has a description`)
    t.not(s.default, undefined, `${name} has a default`)
  }
})

t.test('values are read from the environment and coerced', async (t) => {
  const config = loadApiConfig({
    PORT: '8080',
    OLLAMA_URL: 'https://ollama.internal:443/prefix',
    LOG_LEVEL: 'debug',
    UNRELATED: 'ignored',
  })
  t.equal(config.PORT, 8080)
  t.equal(config.OLLAMA_URL, 'https://ollama.internal:443/prefix')
  t.equal(config.LOG_LEVEL, 'debug')
  t.notOk('UNRELATED' in config)
})

const badValues: Array<[string, string, RegExp]> = [
  ['PORT', 'abc', /PORT must be integer/],
  ['PORT', '70000', /PORT must be <= 65535/],
  ['OLLAMA_URL', 'ftp://host', /OLLAMA_URL must match pattern/],
  ['REDIS_URL', 'localhost:6379', /REDIS_URL must match pattern/],
  ['LOG_LEVEL', 'loud', /LOG_LEVEL must be equal to constant/],
  ['BODY_LIMIT', '10', /BODY_LIMIT must be >= 1024/],
]

for (const [name, value, message] of badValues) {
  t.test(`a bad ${name} stops the start with a message naming it`, async (t) => {
    const err = t.throws(() => loadApiConfig({ [name]: value })) as ConfigError
    t.type(err, ConfigError)
    t.match(err.message, /^Invalid configuration:/)
    t.match(err.message, message)
  })
}

t.test('a bad worker value names the variable', async (t) => {
  const err = t.throws(() => loadWorkerConfig({ WORKER_CONCURRENCY: '0' })) as Error
  t.match(err.message, /WORKER_CONCURRENCY must be >= 1/)
})

t.test('API keys: split, trimmed, and too-short keys refused without echoing them', async (t) => {
  const config = loadApiConfig({
    API_KEYS: ' reader-one-0123456789 , ,reader-two-0123456789',
    ADMIN_API_KEYS: 'admin-one-0123456789',
  })
  t.same(config.apiKeys.readers, ['reader-one-0123456789', 'reader-two-0123456789'])
  t.same(config.apiKeys.admins, ['admin-one-0123456789'])
  t.ok(authEnabled(config))
  t.ok(authEnabled(loadApiConfig({ ADMIN_API_KEYS: 'admin-only-0123456789' })))

  const err = t.throws(() =>
    loadApiConfig({ API_KEYS: 'long-enough-0123456789,shortkey' }),
  ) as ConfigError
  t.match(err.message, /API_KEYS key #2 is shorter than 16 characters/)
  t.notMatch(err.message, /shortkey/)
  t.same(err.problems.length, 1)
})

t.test('redactUrl hides user info and keeps the rest', async (t) => {
  t.equal(redactUrl('redis://:s3cret@redis:6379'), 'redis://:***@redis:6379')
  t.equal(redactUrl('redis://user:s3cret@redis:6379/0'), 'redis://***:***@redis:6379/0')
  t.equal(redactUrl('http://127.0.0.1:11434/'), 'http://127.0.0.1:11434')
  t.equal(redactUrl('not a url'), '<invalid url>')
})

t.test('job ids are dash-separated, never contain a colon, never digits only', async (t) => {
  t.equal(jobId('sync', 'src:1', 42), 'sync-src_1-42')
  t.notMatch(jobId('page', 123), /^\d+$/)
})

t.test('AppError carries its code and status into the body', async (t) => {
  const err = new AppError(503, ErrorCode.ollamaUnavailable, 'down')
  t.same(err.toBody(), { error: 'ollama_unavailable', message: 'down', statusCode: 503 })
})

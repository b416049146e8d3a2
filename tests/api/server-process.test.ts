import t from 'tap'
import { request } from 'undici'
import { tempDir } from '../helpers/api.ts'
import { standIn } from '../helpers/ollama.ts'
import { runService } from '../helpers/process.ts'
import { startRedis } from '../helpers/redis.ts'

const ENTRY = 'services/api/src/server.ts'

t.test('a bad setting stops the API with a message naming the variable', async (t) => {
  const api = runService(t, ENTRY, { PORT: 'eighty', OLLAMA_URL: 'ollama:11434' })
  const { code } = await api.exit
  t.equal(code, 1)
  t.match(api.output(), /Invalid configuration:/)
  t.match(api.output(), /PORT must be integer/)
  t.match(api.output(), /OLLAMA_URL must match pattern/)
  t.notMatch(api.output(), /at .*\.ts:\d+/, 'no stack trace')
})

t.test('the API serves, keeps keys out of its logs, and shuts down cleanly', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const ollama = await standIn(t)
  const secret = 'very-secret-reader-key-123'
  const api = runService(t, ENTRY, {
    PORT: '0',
    REDIS_URL: redis.url,
    OLLAMA_URL: ollama.url,
    LANCEDB_URI: `${await tempDir(t)}/db`,
    API_KEYS: secret,
    LOG_LEVEL: 'info',
  })
  const line = await api.waitFor(/Server listening at/)
  const url = /listening at (http:\/\/\S+?)"/.exec(line)?.[1]
  t.ok(url, 'logs its address')

  const res = await request(`${url}/api/generate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'hi' }),
  })
  t.equal(res.statusCode, 200)
  await res.body.dump()
  const denied = await request(`${url}/api/models`, {
    headers: { authorization: 'Bearer wrong-key-0000000000' },
  })
  t.equal(denied.statusCode, 401)
  await denied.body.dump()
  await api.waitFor(/"statusCode":401/)

  t.notMatch(api.output(), secret, 'the key is never logged')
  t.notMatch(api.output(), /wrong-key/, 'nor a rejected one')
  t.match(api.output(), /"reqId":/, 'lines carry request ids')
  t.notMatch(api.output(), /AUTH IS OFF/)

  api.child.kill('SIGTERM')
  const { code } = await api.exit
  t.equal(code, 0)
  t.match(api.output(), /shutting down/)
})

t.test('with no keys the API says loudly that auth is off', async (t) => {
  const api = runService(t, ENTRY, {
    PORT: '0',
    LANCEDB_URI: `${await tempDir(t)}/db`,
    REDIS_URL: 'redis://127.0.0.1:1',
  })
  await api.waitFor(/Server listening at/)
  t.match(api.output(), /AUTH IS OFF/)
  api.child.kill('SIGINT')
  t.equal((await api.exit).code, 0)
})

import t from 'tap'
import { humanBytes } from '../../../services/api/src/lib/human-bytes.ts'
import { buildTestApp } from '../../helpers/api.ts'
import { standIn } from '../../helpers/ollama.ts'

t.test('models lists what Ollama has, with a human size and the bytes', async (t) => {
  const ollama = await standIn(t)
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await app.inject({ method: 'GET', url: '/api/models' })
  t.equal(res.statusCode, 200)
  const { models } = res.json()
  t.equal(models.length, ollama.options.models.length)
  const first = ollama.options.models[0]
  t.ok(first)
  t.same(models[0], {
    name: first?.name,
    size: humanBytes(first?.size ?? 0),
    bytes: first?.size,
    modified_at: first?.modifiedAt,
    family: first?.family,
    parameter_size: first?.parameterSize,
    quantization: first?.quantization,
  })
})

t.test('an empty Ollama lists no models', async (t) => {
  const ollama = await standIn(t, { models: [] })
  const app = await buildTestApp(t, { OLLAMA_URL: ollama.url })
  const res = await app.inject({ method: 'GET', url: '/api/models' })
  t.same(res.json(), { models: [] })
})

t.test('models answers 503 when Ollama is unreachable', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/api/models' })
  t.equal(res.statusCode, 503)
  t.equal(res.json().error, 'ollama_unavailable')
})

t.test('humanBytes reads like Ollama', async (t) => {
  t.equal(humanBytes(0), '0 B')
  t.equal(humanBytes(999), '999 B')
  t.equal(humanBytes(1_300_000_000), '1.3 GB')
  t.equal(humanBytes(2_019_393_189), '2.0 GB')
  t.equal(humanBytes(274_302_450), '274 MB')
  t.equal(humanBytes(45_960_996_000), '46.0 GB')
  t.equal(humanBytes(3.2e18), '3200 PB')
})

t.test('an OLLAMA_URL that is not Ollama is a 502 saying so', async (t) => {
  const ollama = await standIn(t)
  const app = await buildTestApp(t, { OLLAMA_URL: `${ollama.url}/wrong-prefix` })
  const res = await app.inject({ method: 'GET', url: '/api/models' })
  t.equal(res.statusCode, 502)
  t.match(res.json(), {
    error: 'ollama_error',
    message: /wrong-prefix answered 404 \(404 page not found\); is it an Ollama server\?/,
  })
})

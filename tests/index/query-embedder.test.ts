import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ollamaQueryEmbedder } from '@confluence-bot/index'
import t from 'tap'
import { standIn } from '../helpers/ollama.ts'
import { expectedEmbedding } from '../helpers/ollama-stand-in.ts'
import { freePort } from '../helpers/redis.ts'

// The query embedder against the Ollama stand-in: a vector, null when Ollama or the model is
// not there (or too slow), and an error (credential hidden) for anything else.

t.test('the query vector, as float32, with OLLAMA_URL credentials and query kept', async (t) => {
  const ollama = await standIn(t)
  const url = new URL(ollama.url)
  url.username = 'reader'
  url.password = 's3cret-pass'
  url.search = '?token=abc123xyz'
  const embed = ollamaQueryEmbedder({ url: url.href })
  const vector = await embed('search_query: how to install', 'nomic-embed-text')
  t.ok(vector instanceof Float32Array)
  t.same(
    Array.from(vector as Float32Array),
    expectedEmbedding('nomic-embed-text', 'search_query: how to install', 8).map(Math.fround),
  )
  const request = ollama.requests.at(-1)
  t.equal(request?.path, '/api/embed')
  t.equal(request?.query, '?token=abc123xyz')
  t.equal(
    request?.headers.authorization,
    `Basic ${Buffer.from('reader:s3cret-pass').toString('base64')}`,
  )
  t.match(request?.body, { model: 'nomic-embed-text', input: 'search_query: how to install' })
})

t.test('a model Ollama does not have is an error that says to pull it', async (t) => {
  const ollama = await standIn(t)
  await t.rejects(ollamaQueryEmbedder({ url: ollama.url })('q', 'no-such-model'), {
    message: 'no-such-model is not pulled on the Ollama server (ollama pull no-such-model)',
  })
})

t.test('null when Ollama is down or does not answer in time', async (t) => {
  const ollama = await standIn(t)
  const port = await freePort()
  t.equal(await ollamaQueryEmbedder({ url: `http://127.0.0.1:${port}` })('q', 'm'), null, 'refused')
  ollama.options.firstByteDelayMs = 2000
  const slow = ollamaQueryEmbedder({ url: ollama.url, timeoutMs: 100 })
  t.equal(await slow('q', 'nomic-embed-text'), null, 'too slow')
})

t.test('any other failure throws, with the credential hidden', async (t) => {
  const ollama = await standIn(t)
  ollama.options.failBeforeOutput = { status: 500, error: 'boom for password s3cret-pass' }
  const url = new URL(ollama.url)
  url.username = 'reader'
  url.password = 's3cret-pass'
  const embed = ollamaQueryEmbedder({ url: url.href })
  const err = (await embed('q', 'nomic-embed-text').catch((e: Error) => e)) as Error
  t.match(err.message, /^Ollama's embed call failed \(model nomic-embed-text\): boom/)
  t.notMatch(err.message, /s3cret-pass/)
})

t.test('an answer without a vector throws', async (t) => {
  const server = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end('{"model":"m","embeddings":[]}')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const { port } = server.address() as AddressInfo
  const embed = ollamaQueryEmbedder({ url: `http://127.0.0.1:${port}` })
  await t.rejects(embed('q', 'm'), /Ollama returned no vector for the query \(model m\)/)
})

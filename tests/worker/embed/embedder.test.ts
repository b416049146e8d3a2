import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { createEmbedder } from '../../../services/worker/src/embed/embedder.ts'
import { SECOND_EMBED_MODEL, withSecondEmbedModel } from '../../helpers/ingest.ts'
import { standIn } from '../../helpers/ollama.ts'
import { expectedEmbedding } from '../../helpers/ollama-stand-in.ts'
import { freePort } from '../../helpers/redis.ts'

// The embedder: batched /api/embed calls through the ollama client; "no model" is a state
// (null), anything else an error.

/** A fake Ollama that answers /api/embed with `reply(inputs, model)`. */
async function fakeOllama(t: Test, reply: (inputs: string[], model: string) => unknown) {
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (chunk) => {
      body += chunk
    })
    req.on('end', () => {
      res.setHeader('content-type', 'application/json')
      const { input, model } = JSON.parse(body) as { input: string[]; model: string }
      res.end(JSON.stringify(reply(input, model)))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

t.test('texts go out in batches and come back in order', async (t) => {
  const ollama = await standIn(t, { embedDimension: 8 })
  const embedder = createEmbedder({ url: ollama.url, model: 'nomic-embed-text', batchSize: 2 })
  const texts = ['one', 'two', 'three', 'four', 'five']
  const vectors = await embedder.embed(texts, 'nomic-embed-text')
  t.same(
    vectors,
    texts.map((text) => Float32Array.from(expectedEmbedding('nomic-embed-text', text, 8))),
  )
  t.equal(embedder.calls, 3, 'ceil(5 / 2) calls')
  t.same(
    ollama.requests.map((r) => (r.body as { input: string[] }).input),
    [['one', 'two'], ['three', 'four'], ['five']],
  )
  t.equal(await embedder.dimension(), 8, 'known from the vectors: no probe')
  t.equal(embedder.calls, 3)
  t.equal(embedder.model, 'nomic-embed-text')
})

t.test('the dimension is probed once with one call', async (t) => {
  const ollama = await standIn(t, { embedDimension: 12 })
  const embedder = createEmbedder({ url: ollama.url, model: 'nomic-embed-text', batchSize: 8 })
  t.equal(await embedder.dimension(), 12)
  t.equal(await embedder.dimension(), 12)
  t.equal(ollama.embedCalls, 1)
})

t.test('a model that is not pulled, or an Ollama that is down, is null', async (t) => {
  const ollama = await standIn(t, { models: [] })
  const missing = createEmbedder({ url: ollama.url, model: 'nomic-embed-text', batchSize: 8 })
  t.equal(await missing.embed(['x'], 'nomic-embed-text'), null)
  t.equal(await missing.dimension(), null)
  const down = createEmbedder({
    url: `http://127.0.0.1:${await freePort()}`,
    model: 'nomic-embed-text',
    batchSize: 8,
  })
  t.equal(await down.embed(['x'], 'nomic-embed-text'), null)
})

t.test('an Ollama error or a malformed answer throws, so the job is retried', async (t) => {
  const failing = await standIn(t, { failBeforeOutput: { status: 500, error: 'out of memory' } })
  const broken = createEmbedder({ url: failing.url, model: 'nomic-embed-text', batchSize: 8 })
  await t.rejects(broken.embed(['x'], 'nomic-embed-text'), /out of memory/)

  const short = await fakeOllama(t, () => ({ embeddings: [[0.1, 0.2]] }))
  const missingOne = createEmbedder({ url: short, model: 'm', batchSize: 8 })
  await t.rejects(missingOne.embed(['a', 'b'], 'm'), /returned 1 vectors for 2 texts/)

  const ragged = await fakeOllama(t, (inputs) => ({
    embeddings: inputs.map((_, i) => (i === 0 ? [0.1, 0.2] : [0.1])),
  }))
  const uneven = createEmbedder({ url: ragged, model: 'm', batchSize: 8 })
  await t.rejects(uneven.embed(['a', 'b'], 'm'), /a vector of length 1 from m; expected 2/)

  const empty = await fakeOllama(t, () => ({ embeddings: [[]] }))
  await t.rejects(
    createEmbedder({ url: empty, model: 'm', batchSize: 8 }).embed(['a'], 'm'),
    /length 0/,
  )
})

t.test("an error that quotes the request never carries OLLAMA_URL's credential", async (t) => {
  const ollama = await standIn(t, {
    failBeforeOutput: {
      status: 500,
      error: 'refused /api/embed?token=s3cr3t-token auth=Basic Z3c6cGFzcy13b3Jk pass=pass-word',
    },
  })
  const host = ollama.url.replace('http://', '')
  const embedder = createEmbedder({
    url: `http://gw:pass-word@${host}/?token=s3cr3t-token`,
    model: 'nomic-embed-text',
    batchSize: 8,
  })
  const err = (await embedder.embed(['x'], 'nomic-embed-text').catch((e: Error) => e)) as Error
  t.match(
    err.message,
    /embed call failed \(model nomic-embed-text\): refused \/api\/embed\?token=\*\*\*/,
  )
  t.notMatch(err.message, /s3cr3t-token|pass-word|Z3c6cGFzcy13b3Jk/)
})

t.test('user info in OLLAMA_URL goes out as Basic auth, its query on every call', async (t) => {
  const ollama = await standIn(t, { embedDimension: 4 })
  const host = ollama.url.replace('http://', '')
  const embedder = createEmbedder({
    url: `http://gate%20way:p%40ss@${host}/?token=abc&x=1`,
    model: 'nomic-embed-text',
    batchSize: 1,
  })
  t.same(await embedder.embed(['one', 'two'], 'nomic-embed-text'), [
    Float32Array.from(expectedEmbedding('nomic-embed-text', 'one', 4)),
    Float32Array.from(expectedEmbedding('nomic-embed-text', 'two', 4)),
  ])
  t.equal(ollama.requests.length, 2)
  for (const sent of ollama.requests) {
    t.equal(sent.path, '/api/embed')
    t.equal(sent.query, '?token=abc&x=1')
    t.equal(sent.headers.authorization, `Basic ${Buffer.from('gate way:p@ss').toString('base64')}`)
  }
  // A malformed escape is sent as written rather than refused.
  const odd = createEmbedder({
    url: `http://a%zz:b@${host}`,
    model: 'nomic-embed-text',
    batchSize: 1,
  })
  await odd.embed(['x'], 'nomic-embed-text')
  t.equal(
    ollama.requests.at(-1)?.headers.authorization,
    `Basic ${Buffer.from('a%zz:b').toString('base64')}`,
  )
  t.equal(ollama.requests.at(-1)?.query, '')
})

t.test('vectors come from the model asked for, each with its own length', async (t) => {
  const ollama = await standIn(t, { embedDimension: 6, models: withSecondEmbedModel() })
  const embedder = createEmbedder({ url: ollama.url, model: 'nomic-embed-text', batchSize: 8 })
  t.same(await embedder.embed(['one'], SECOND_EMBED_MODEL), [
    Float32Array.from(expectedEmbedding(SECOND_EMBED_MODEL, 'one', 6)),
  ])
  t.same(
    ollama.requests.map((r) => (r.body as { model: string }).model),
    [SECOND_EMBED_MODEL],
    'the model asked for, not the configured one',
  )
  t.equal(embedder.model, 'nomic-embed-text')
  // A length learnt from one model is no limit on another.
  const mixed = await fakeOllama(t, (inputs, model) => ({
    embeddings: inputs.map(() => (model === 'a' ? [0.1, 0.2] : [0.1, 0.2, 0.3])),
  }))
  const two = createEmbedder({ url: mixed, model: 'a', batchSize: 8 })
  t.equal((await two.embed(['x'], 'a'))?.[0]?.length, 2)
  t.equal((await two.embed(['x'], 'b'))?.[0]?.length, 3)
  t.equal(await two.dimension(), 2, "the configured model's length, no probe")
})

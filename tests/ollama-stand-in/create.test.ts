// The stand-in's blobs and create routes (shared/reference/ollama-api.md, "Creating a model from a
// GGUF file"), driven by the official `ollama` npm client where it has a call for it (create,
// list) and by fetch for the blob routes it lacks. The api's import route sends Ollama the same
// create request the client does (asserted below on the recorded bodies).
import { createHash } from 'node:crypto'
import { type CreateRequest, Ollama } from 'ollama'
import t, { type Test } from 'tap'
import { type StandInOptions, startOllamaStandIn } from '../helpers/ollama-stand-in.ts'

const GGUF = Buffer.concat([Buffer.from('GGUF'), Buffer.alloc(4096, 7)])
const digestOf = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

async function setup(t: Test, options?: Partial<StandInOptions>) {
  const standIn = await startOllamaStandIn(options)
  t.teardown(() => standIn.close())
  return { standIn, ollama: new Ollama({ host: standIn.url }) }
}

const blob = (url: string, method: string, digest: string, body?: Buffer) =>
  fetch(`${url}/api/blobs/${digest}`, { method, body: body as BodyInit | undefined })

/** create() with `files`, which the client's CreateRequest type does not name but sends as is. */
type WithFiles = CreateRequest & { files: Record<string, string> }
const streamed = (request: WithFiles) => ({ ...request, stream: true as const })
const withFiles = (request: WithFiles) => ({ ...request, stream: false as const })

t.test('HEAD answers 404 until the blob is POSTed (201), then 200', async (t) => {
  const { standIn } = await setup(t)
  const digest = digestOf(GGUF)
  t.equal((await blob(standIn.url, 'HEAD', digest)).status, 404)
  const stored = await blob(standIn.url, 'POST', digest, GGUF)
  t.equal(stored.status, 201)
  t.equal(await stored.text(), '')
  t.equal((await blob(standIn.url, 'HEAD', digest)).status, 200)
  t.same(standIn.blobs.get(digest), { size: GGUF.length, gguf: true })
  // Sent again: Ollama already has it.
  t.equal((await blob(standIn.url, 'POST', digest.replace(':', '-'), GGUF)).status, 200)
  // Every byte received counts, stored or not (a HEAD sends none).
  t.equal(standIn.blobBytes, 2 * GGUF.length)
})

t.test('a body whose SHA-256 is not the digest: 400 digest mismatch, nothing stored', async (t) => {
  const { standIn } = await setup(t)
  const wrong = `sha256:${'0'.repeat(64)}`
  const res = await blob(standIn.url, 'POST', wrong, GGUF)
  t.equal(res.status, 400)
  t.same(await res.json(), {
    error: `digest mismatch, expected "${wrong}", got "${digestOf(GGUF)}"`,
  })
  t.equal(standIn.blobs.size, 0)
  const bad = await blob(standIn.url, 'HEAD', 'sha256:xyz')
  t.equal(bad.status, 400)
  t.equal((await blob(standIn.url, 'PUT', digestOf(GGUF), GGUF)).status, 405)
})

t.test(
  "create() with files: the client's request, status lines, then the model is listed",
  async (t) => {
    const { standIn, ollama } = await setup(t)
    const digest = digestOf(GGUF)
    await blob(standIn.url, 'POST', digest, GGUF)
    const progress = await ollama.create(
      streamed({
        model: 'acme/tiny:1b',
        files: { 'tiny.gguf': digest },
        system: 'Be brief.',
        parameters: { temperature: 0.1 },
      }),
    )
    const statuses: string[] = []
    for await (const part of progress) statuses.push(part.status)
    t.same(statuses, [
      'parsing GGUF',
      `using existing layer ${digest}`,
      statuses[2],
      statuses[3],
      'writing manifest',
      'success',
    ])
    t.match(statuses[2], /^creating new layer sha256:[0-9a-f]{64}$/)
    t.same(standIn.requests.at(-1)?.body, {
      model: 'acme/tiny:1b',
      files: { 'tiny.gguf': digest },
      system: 'Be brief.',
      parameters: { temperature: 0.1 },
      stream: true,
    })
    const { models } = await ollama.list()
    t.ok(models.some((m) => m.name === 'acme/tiny:1b' && m.size === GGUF.length))
    // Not streamed: one object; created again, the model is replaced, not doubled.
    t.same(
      await ollama.create(withFiles({ model: 'acme/tiny:1b', files: { 'tiny.gguf': digest } })),
      { status: 'success' },
    )
    t.equal((await ollama.list()).models.filter((m) => m.name === 'acme/tiny:1b').length, 1)
  },
)

t.test(
  'create() from a blob Ollama lacks, or one that is not GGUF, fails and makes no model',
  async (t) => {
    const { standIn, ollama } = await setup(t)
    const missing = `sha256:${'a'.repeat(64)}`
    await t.rejects(
      ollama
        .create(streamed({ model: 'nope', files: { 'x.gguf': missing } }))
        .then(async (parts) => {
          for await (const _ of parts);
        }),
      {
        message: `open /root/.ollama/models/blobs/sha256-${'a'.repeat(64)}: no such file or directory`,
      },
    )
    const zip = Buffer.from('PK\u0003\u0004 not a model')
    await blob(standIn.url, 'POST', digestOf(zip), zip)
    await t.rejects(
      ollama.create(withFiles({ model: 'nope', files: { 'x.gguf': digestOf(zip) } })),
      {
        message: 'invalid file magic',
      },
    )
    t.notOk((await ollama.list()).models.some((m) => m.name.startsWith('nope')))
  },
)

t.test('create() from an existing model; bad requests are 400s', async (t) => {
  const { ollama } = await setup(t)
  t.same(await ollama.create({ model: 'mine', from: 'llama3.2' }), { status: 'success' })
  t.ok((await ollama.list()).models.some((m) => m.name === 'mine:latest'))
  await t.rejects(ollama.create({ model: 'other', from: 'absent' }), {
    message: "model 'absent' not found",
  })
  await t.rejects(ollama.create({ model: 'bad name!', from: 'llama3.2' }), {
    message: 'invalid model name',
  })
  await t.rejects(ollama.create({ model: 'empty' }), {
    message: "neither 'from' or 'files' was specified",
  })
})

t.test('knobs: an error before output, or a line after N status lines', async (t) => {
  const { standIn, ollama } = await setup(t, {
    failBeforeOutput: { status: 500, error: 'no space left on device' },
  })
  const digest = digestOf(GGUF)
  const refused = await blob(standIn.url, 'POST', digest, GGUF)
  t.equal(refused.status, 500)
  t.equal(standIn.blobs.size, 0)
  await t.rejects(ollama.create({ model: 'x', from: 'llama3.2' }), {
    message: 'no space left on device',
  })
  standIn.options.failBeforeOutput = undefined
  standIn.options.failAfterTokens = { count: 1, error: 'unsupported architecture' }
  await blob(standIn.url, 'POST', digest, GGUF)
  const parts = await ollama.create(streamed({ model: 'x', files: { 'x.gguf': digest } }))
  const seen: string[] = []
  await t.rejects(
    (async () => {
      for await (const part of parts) seen.push(part.status)
    })(),
    { message: 'unsupported architecture' },
  )
  t.same(seen, ['parsing GGUF'])
  await t.rejects(ollama.create(withFiles({ model: 'x', files: { 'x.gguf': digest } })), {
    message: 'unsupported architecture',
  })
  t.notOk((await ollama.list()).models.some((m) => m.name === 'x:latest'))
})

// POST /api/models/import over a real socket: a generated GGUF-looking file streamed through the
// api into the Ollama stand-in (hashed and never held in memory on the way), and every way an
// import fails leaving no model in Ollama and no temporary file behind.
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, rmSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { ollamaModelName } from '@confluence-bot/shared'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { ADMIN_KEY, bearer, listenTestApp, READER_KEY, tempDir } from '../../helpers/api.ts'
import { ndjson, silentOllama, standIn } from '../../helpers/ollama.ts'
import type { OllamaStandIn, StandInModel, StandInOptions } from '../../helpers/ollama-stand-in.ts'
import { startRedis } from '../../helpers/redis.ts'

const MiB = 1024 * 1024
const BIG = 300 * MiB
const SMALL = Buffer.concat([Buffer.from('GGUF'), randomBytes(64 * 1024)])
const digestOf = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

type Rig = { ollama: OllamaStandIn; url: string; dir: string }

// Where an import holds its model's name while it runs (one for the whole file).
const redis = await startRedis()
t.teardown(() => redis.stop())

async function rig(t: Test, options: Partial<StandInOptions> = {}, env = {}): Promise<Rig> {
  const ollama = await standIn(t, options)
  const dir = join(await tempDir(t, 'cnfl-import-'), 'imports')
  const { url } = await listenTestApp(t, {
    OLLAMA_URL: ollama.url,
    REDIS_URL: redis.url,
    MODEL_IMPORT_DIR: dir,
    ADMIN_API_KEYS: ADMIN_KEY,
    API_KEYS: READER_KEY,
    ...env,
  })
  return { ollama, url, dir }
}

type Sent = { status: number; type: string; body: string; json: () => Record<string, unknown> }

async function upload(
  r: { url: string },
  query: Record<string, string>,
  body: Buffer | Readable,
  headers: Record<string, string> = {},
): Promise<Sent> {
  const res = await request(`${r.url}/api/models/import?${new URLSearchParams(query)}`, {
    method: 'POST',
    headers: { ...bearer(ADMIN_KEY), 'content-type': 'application/octet-stream', ...headers },
    body,
  })
  const text = await res.body.text()
  return {
    status: res.statusCode,
    type: String(res.headers['content-type']),
    body: text,
    json: () => JSON.parse(text),
  }
}

const tempFiles = async (dir: string) => readdir(dir).catch(() => [] as string[])
const modelNames = (ollama: OllamaStandIn) => ollama.options.models.map((m) => m.name)
const blobRequests = (ollama: OllamaStandIn) =>
  ollama.requests.filter((r) => r.path.startsWith('/api/blobs/') || r.path === '/api/create')

/** Nothing left: no model of that name in Ollama and no temporary file (waits for a removal). */
async function nothingLeft(t: Test, r: Rig, name: string) {
  for (let i = 0; i < 100 && (await tempFiles(r.dir)).length > 0; i++) {
    await new Promise((wake) => setTimeout(wake, 20))
  }
  t.same(await tempFiles(r.dir), [], 'no temporary file left')
  t.notOk(
    modelNames(r.ollama).some((n) => n.split(':')[0] === name),
    `no model ${name}`,
  )
}

/** A GGUF-looking stream of `size` bytes generated as it is read, hashed as it goes. */
function generated(size: number) {
  const hash = createHash('sha256')
  const block = randomBytes(MiB)
  let sent = 0
  let n = 0
  const stream = new Readable({
    read() {
      if (sent >= size) {
        this.push(null)
        return
      }
      const chunk = Buffer.from(block.subarray(0, Math.min(MiB, size - sent)))
      chunk.writeUInt32LE(n++, 8)
      if (sent === 0) chunk.write('GGUF', 0)
      sent += chunk.length
      hash.update(chunk)
      this.push(chunk)
    },
  })
  return { stream, digest: () => `sha256:${hash.digest('hex')}` }
}

t.test(
  'a 300 MB file streams through with flat memory; the digest and progress arrive',
  async (t) => {
    const r = await rig(t)
    const file = generated(BIG)
    const before = process.memoryUsage().rss
    let peak = before
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss)
    }, 25)
    t.teardown(() => clearInterval(sampler))
    const res = await upload(r, { name: 'big-model:q4', stream: 'true' }, file.stream)
    clearInterval(sampler)
    t.equal(res.status, 200)
    t.equal(res.type, 'application/x-ndjson')
    const lines = ndjson(res.body)
    const digest = file.digest()
    // The blob Ollama stored is what the client sent, byte for byte.
    t.same(r.ollama.blobs.get(digest), { size: BIG, gguf: true })
    const uploads = lines.filter((l) => l.status === `uploading ${digest}`)
    t.ok(uploads.length >= 2, 'upload progress lines')
    t.same(uploads.at(-1), { status: `uploading ${digest}`, digest, total: BIG, completed: BIG })
    t.ok(uploads.every((l) => (l.completed as number) <= BIG && l.total === BIG))
    const statuses = lines.map((l) => l.status)
    t.ok(statuses.includes('parsing GGUF'))
    t.same(lines.at(-1), { status: 'success' })
    t.same(r.ollama.requests.find((q) => q.path === '/api/create')?.body, {
      model: 'big-model:q4',
      files: { 'big-model-q4.gguf': digest },
      stream: true,
    })
    t.ok(modelNames(r.ollama).includes('big-model:q4'))
    t.same(await tempFiles(r.dir), [])
    // Held in memory, the file alone would have added 300 MB (the client, the api and Ollama all
    // live in this process).
    t.ok(peak - before < 200 * MiB, `RSS grew ${Math.round((peak - before) / MiB)} MB`)
  },
)

t.test('not GGUF: 415 before anything is sent to Ollama', async (t) => {
  const r = await rig(t)
  const res = await upload(r, { name: 'zip' }, Buffer.from('PK\u0003\u0004 an archive'))
  t.equal(res.status, 415)
  t.match(res.json(), { error: 'not_gguf', message: /does not begin with "GGUF"/ })
  const tiny = await upload(r, { name: 'zip' }, Buffer.from('GG'))
  t.equal(tiny.status, 415)
  t.same(blobRequests(r.ollama), [])
  await nothingLeft(t, r, 'zip')
})

t.test('an existing name: 409 unless replace=true; options reach create', async (t) => {
  const r = await rig(t)
  const taken = await upload(r, { name: 'LLAMA3.2' }, SMALL)
  t.equal(taken.status, 409)
  t.match(taken.json(), { error: 'model_exists', message: /llama3\.2:latest.*replace=true/ })
  t.same(blobRequests(r.ollama), [])
  const replaced = await upload(
    r,
    {
      name: 'llama3.2',
      replace: 'true',
      digest: digestOf(SMALL),
      system: 'Answer in French.',
      template: '{{ .Prompt }}',
      parameters: '{"temperature":0.2}',
    },
    SMALL,
  )
  t.equal(replaced.status, 200)
  t.same(replaced.json(), { status: 'success', digest: digestOf(SMALL) })
  t.same(r.ollama.requests.find((q) => q.path === '/api/create')?.body, {
    model: 'llama3.2',
    files: { 'llama3.2.gguf': digestOf(SMALL) },
    template: '{{ .Prompt }}',
    system: 'Answer in French.',
    parameters: { temperature: 0.2 },
    stream: true,
  })
  t.equal(modelNames(r.ollama).filter((n) => n === 'llama3.2:latest').length, 1)
  // The same file under another name: Ollama has the blob already, it is not sent again.
  const posts = () =>
    r.ollama.requests.filter((q) => q.method === 'POST' && q.path.startsWith('/api/blobs/'))
  t.equal(posts().length, 1)
  const again = await upload(r, { name: 'copy', stream: 'true' }, SMALL)
  t.same(ndjson(again.body).at(-1), { status: 'success' })
  t.equal(posts().length, 1)
  t.ok(modelNames(r.ollama).includes('copy:latest'))
})

t.test(
  'a digest the client computed that does not match what arrived: 400, nothing made',
  async (t) => {
    const r = await rig(t)
    const res = await upload(r, { name: 'cut', digest: `sha256:${'0'.repeat(64)}` }, SMALL)
    t.equal(res.status, 400)
    t.match(res.json(), { error: 'digest_mismatch', message: new RegExp(digestOf(SMALL)) })
    t.same(blobRequests(r.ollama), [])
    await nothingLeft(t, r, 'cut')
  },
)

t.test('bad requests: a bad name, bad parameters, another content type', async (t) => {
  const r = await rig(t)
  t.equal((await upload(r, { name: 'bad name!' }, SMALL)).status, 400)
  for (const parameters of ['{nope', '[1]', 'null']) {
    const res = await upload(r, { name: 'p', parameters }, SMALL)
    t.equal(res.status, 400)
    t.match(res.json(), { message: /querystring\/parameters must be a JSON object/ })
  }
  const json = await upload(r, { name: 'j' }, Buffer.from('{}'), {
    'content-type': 'application/json',
  })
  t.equal(json.status, 415)
  t.match(json.json(), { error: 'unsupported_media_type' })
  const reader = await upload(r, { name: 'r' }, SMALL, bearer(READER_KEY))
  t.equal(reader.status, 403)
  await nothingLeft(t, r, 'p')
})

t.test('over MODEL_IMPORT_LIMIT: 413, declared or not', async (t) => {
  const r = await rig(t, {}, { MODEL_IMPORT_LIMIT: '16384' })
  const declared = await upload(r, { name: 'huge' }, SMALL)
  t.equal(declared.status, 413)
  t.match(declared.json(), { error: 'payload_too_large', message: /MODEL_IMPORT_LIMIT/ })
  const chunked = await upload(r, { name: 'huge' }, Readable.from([SMALL]))
  t.equal(chunked.status, 413)
  t.same(blobRequests(r.ollama), [])
  await nothingLeft(t, r, 'huge')
})

t.test('Ollama refuses the create: 502, or an error line when streamed; no model', async (t) => {
  const r = await rig(t, {
    faultFor: ({ path }) =>
      path === '/api/create'
        ? { failBeforeOutput: { status: 500, error: 'unsupported architecture' } }
        : undefined,
  })
  const res = await upload(r, { name: 'odd' }, SMALL)
  t.equal(res.status, 502)
  t.match(res.json(), { error: 'ollama_error', message: /odd failed: .*unsupported architecture/ })
  r.ollama.options.faultFor = () => ({ failAfterTokens: { count: 1, error: 'tensor too large' } })
  const streamed = await upload(r, { name: 'odd', stream: 'true' }, SMALL)
  t.equal(streamed.status, 200)
  const lines = ndjson(streamed.body)
  t.ok(lines.some((l) => l.status === 'parsing GGUF'))
  t.match(lines.at(-1), { error: 'ollama_error', message: 'tensor too large' })
  await nothingLeft(t, r, 'odd')
})

t.test('Ollama refuses the blob, or is gone: 502 / 503, no model', async (t) => {
  const r = await rig(t, {
    faultFor: ({ method, path }) =>
      method === 'POST' && path.startsWith('/api/blobs/')
        ? { failBeforeOutput: { status: 500, error: 'no space left on device' } }
        : undefined,
  })
  const refused = await upload(r, { name: 'full' }, SMALL)
  t.equal(refused.status, 502)
  t.match(refused.json(), { message: /no space left on device/ })
  await nothingLeft(t, r, 'full')
  const gone = await rig(t, {}, { OLLAMA_URL: 'http://127.0.0.1:1' })
  const down = await upload(gone, { name: 'down', replace: 'true' }, SMALL)
  t.equal(down.status, 503)
  t.match(down.json(), {
    error: 'ollama_unavailable',
    message: /down failed: Ollama is not reachable/,
  })
  t.same(await tempFiles(gone.dir), [])
})

t.test('the temporary file vanishing mid-import is a 502, not a hang', async (t) => {
  let dir = ''
  const r = await rig(t, {
    faultFor: ({ method }) => {
      // As Ollama is asked whether it has the blob, the file is removed under the api.
      if (method === 'HEAD') for (const name of readdirSync(dir)) rmSync(join(dir, name))
      return undefined
    },
  })
  dir = r.dir
  const res = await upload(r, { name: 'vanished' }, SMALL)
  t.equal(res.status, 502)
  t.match(res.json(), { error: 'ollama_error', message: /vanished failed: .*ENOENT/ })
  await nothingLeft(t, r, 'vanished')
})

t.test('an error from /api/tags while checking the name: 502', async (t) => {
  const foreign = createServer((_req, res) => {
    res.writeHead(500, { 'content-type': 'application/json' })
    res.end('{"error":"database locked"}')
  })
  await new Promise<void>((resolve) => foreign.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => foreign.close(resolve)))
  const address = foreign.address() as { port: number }
  const r = await rig(t, {}, { OLLAMA_URL: `http://127.0.0.1:${address.port}` })
  const res = await upload(r, { name: 'x' }, SMALL)
  t.equal(res.status, 502)
  t.match(res.json(), { message: /database locked/ })
  t.same(await tempFiles(r.dir), [])
})

t.test('a client that goes away mid-upload leaves no file and no model', async (t) => {
  const r = await rig(t)
  const controller = new AbortController()
  let sent = 0
  const body = new Readable({
    read() {
      const chunk = randomBytes(MiB)
      if (sent === 0) chunk.write('GGUF', 0)
      sent += chunk.length
      if (sent > 8 * MiB) {
        controller.abort()
        return
      }
      this.push(chunk)
    },
  })
  await t.rejects(
    request(`${r.url}/api/models/import?name=half`, {
      method: 'POST',
      headers: { ...bearer(ADMIN_KEY), 'content-type': 'application/octet-stream' },
      body,
      signal: controller.signal,
    }),
  )
  await nothingLeft(t, r, 'half')
  t.same(blobRequests(r.ollama), [])
})

t.test('the OpenAPI document shows the body as a file upload', async (t) => {
  const r = await rig(t)
  const res = await request(`${r.url}/docs/json`)
  const doc = (await res.body.json()) as {
    paths: Record<string, { post: { requestBody: { content: Record<string, unknown> } } }>
  }
  const operation = doc.paths['/api/models/import']?.post
  t.same(Object.keys(operation?.requestBody.content ?? {}), ['application/octet-stream'])
})

t.test("create's stream cut by Ollama: an error line, no model", async (t) => {
  const r = await rig(t, {
    faultFor: ({ path }) => (path === '/api/create' ? { truncateAfterTokens: 1 } : undefined),
  })
  const res = await upload(r, { name: 'crashed', stream: 'true' }, SMALL)
  const last = ndjson(res.body).at(-1)
  t.match(last, {
    error: 'ollama_stream_interrupted',
    message: /Creating crashed on Ollama at .* stopped before it finished/,
  })
  await nothingLeft(t, r, 'crashed')
})

t.test('a client that leaves once the file is with Ollama: no create goes on', async (t) => {
  const r = await rig(t, {
    faultFor: ({ path }) => (path === '/api/create' ? { firstByteDelayMs: 30_000 } : undefined),
  })
  const controller = new AbortController()
  const res = await request(`${r.url}/api/models/import?name=left&stream=true`, {
    method: 'POST',
    headers: { ...bearer(ADMIN_KEY), 'content-type': 'application/octet-stream' },
    body: SMALL,
    signal: controller.signal,
  })
  let text = ''
  await t.rejects(
    (async () => {
      for await (const chunk of res.body) {
        text += chunk.toString()
        // The upload to Ollama is done: the api now waits on create.
        if (text.includes(`"completed":${SMALL.length}`)) controller.abort()
      }
    })(),
  )
  await nothingLeft(t, r, 'left')
  // Either the create was never sent, or Ollama saw it cancelled.
  const creates = r.ollama.requests.filter((q) => q.path === '/api/create')
  if (creates.length > 0) t.equal((await r.ollama.waitForAbort(10_000)).path, '/api/create')
})

t.test("the blob and create requests carry OLLAMA_URL's credential", async (t) => {
  const ollama = await standIn(t)
  const dir = join(await tempDir(t, 'cnfl-import-'), 'imports')
  const { url } = await listenTestApp(t, {
    OLLAMA_URL: `${ollama.url.replace('http://', 'http://gw:secret@')}/?token=t0k3n`,
    MODEL_IMPORT_DIR: dir,
    REDIS_URL: redis.url,
  })
  const res = await upload({ url }, { name: 'guarded' }, SMALL, { authorization: '' })
  t.equal(res.status, 200, res.body)
  const sent = blobRequests(ollama)
  t.same(
    sent.map((q) => q.method),
    ['HEAD', 'POST', 'POST'],
  )
  for (const q of sent) {
    t.equal(q.query, '?token=t0k3n', `${q.method} ${q.path}: query kept`)
    t.equal(q.headers.authorization, `Basic ${Buffer.from('gw:secret').toString('base64')}`)
  }
})

t.test(
  'a model made under the name during the upload (cnfl, another tool): 409, not overwritten',
  async (t) => {
    const r = await rig(t)
    const made: string[] = []
    // Another writer creates the name once the file is here, before the import's create.
    r.ollama.options.faultFor = ({ method, path }) => {
      if (method === 'HEAD' && path.startsWith('/api/blobs/')) {
        const name = `race${made.length}:latest`
        made.push(name)
        r.ollama.options.models.push({ ...(r.ollama.options.models[0] as StandInModel), name })
      }
      return undefined
    }
    const res = await upload(r, { name: 'race0' }, SMALL)
    t.equal(res.status, 409)
    t.match(res.json(), {
      error: 'model_exists',
      message: /race0:latest \(made while the file was uploading\).*replace=true/,
    })
    const streamed = await upload(r, { name: 'race1', stream: 'true' }, SMALL)
    t.match(ndjson(streamed.body).at(-1), { error: 'model_exists', message: /race1:latest/ })
    t.notOk(
      r.ollama.requests.some((q) => q.path === '/api/create'),
      'create was not called',
    )
    t.same(await tempFiles(r.dir), [])
    r.ollama.options.faultFor = undefined
    const replaced = await upload(r, { name: 'race0', replace: 'true' }, SMALL)
    t.equal(replaced.status, 200)
    t.equal(modelNames(r.ollama).filter((n) => n === 'race0:latest').length, 1)
  },
)

t.test(
  'an Ollama that never answers: 504 naming it (model list, name check, blob check), not a hang',
  async (t) => {
    const silent = await silentOllama(t)
    const dir = join(await tempDir(t, 'cnfl-import-silent-'), 'imports')
    const { url } = await listenTestApp(t, {
      OLLAMA_URL: silent,
      OLLAMA_RESPONSE_TIMEOUT_MS: '300',
      REDIS_URL: redis.url,
      MODEL_IMPORT_DIR: dir,
      ADMIN_API_KEYS: ADMIN_KEY,
    })
    const expected = {
      error: 'ollama_timeout',
      message:
        /Ollama at OLLAMA_URL=.* did not begin answering within OLLAMA_RESPONSE_TIMEOUT_MS \(300 ms\)/,
    }
    // The client gives up long after the api should have: a hang fails here, not at tap's timeout.
    const listed = await request(`${url}/api/models`, {
      headers: bearer(ADMIN_KEY),
      headersTimeout: 20_000,
    })
    t.equal(listed.statusCode, 504)
    t.match(await listed.body.json(), expected)
    // The name check (GET /api/tags), then, with replace=true, the blob's HEAD.
    for (const query of [{ name: 'hang' }, { name: 'hang', replace: 'true' }] as Array<
      Record<string, string>
    >) {
      const res = await upload({ url }, query, SMALL)
      t.equal(res.status, 504, res.body)
      t.match(res.json(), expected)
    }
    t.same(await tempFiles(dir), [])
  },
)

t.test(
  "create's answer that never begins: 504; a slow model load elsewhere is not cut",
  async (t) => {
    const r = await rig(t, {}, { OLLAMA_RESPONSE_TIMEOUT_MS: '300' })
    r.ollama.options.faultFor = ({ path }) =>
      path === '/api/create' ? { firstByteDelayMs: 60_000 } : undefined
    const res = await upload(r, { name: 'stuck' }, SMALL)
    t.equal(res.status, 504, res.body)
    t.match(res.json(), { error: 'ollama_timeout', message: /OLLAMA_RESPONSE_TIMEOUT_MS/ })
    await nothingLeft(t, r, 'stuck')
    // A model that takes longer than OLLAMA_RESPONSE_TIMEOUT_MS to load still answers.
    r.ollama.options.faultFor = undefined
    r.ollama.options.firstByteDelayMs = 1000
    const answer = await request(`${r.url}/ollama/api/generate`, {
      method: 'POST',
      headers: { ...bearer(READER_KEY), 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'llama3.2', prompt: 'Hi', stream: false }),
    })
    t.equal(answer.statusCode, 200)
    t.match(await answer.body.json(), { response: 'The sky is blue.', done: true })
  },
)

t.test('streamed: the name is free by the time the last line arrives', async (t) => {
  // Create answers after a moment; meanwhile Redis holds back writes (CLIENT PAUSE WRITE), so the
  // hold's release cannot land until the pause ends. The last line must wait for it: a client
  // that reads it and imports the name again at once must find the name free.
  const r = await rig(t, {
    faultFor: ({ path }) => (path === '/api/create' ? { firstByteDelayMs: 300 } : undefined),
  })
  const client = new Redis(redis.url)
  t.teardown(() => client.quit())
  const HOLD = `cnfl:model-import:${ollamaModelName('again')}`
  const res = await request(`${r.url}/api/models/import?name=again&stream=true`, {
    method: 'POST',
    headers: { ...bearer(ADMIN_KEY), 'content-type': 'application/octet-stream' },
    body: SMALL,
  })
  let text = ''
  let paused = false
  let heldAtEnd: number | undefined
  for await (const chunk of res.body) {
    text += chunk.toString()
    if (!paused && text.includes(`"completed":${SMALL.length}`)) {
      paused = true
      t.equal(await client.exists(HOLD), 1, 'held while the import runs')
      await client.call('CLIENT', 'PAUSE', '1500', 'WRITE')
    }
    if (text.includes('"status":"success"') && heldAtEnd === undefined) {
      heldAtEnd = await client.exists(HOLD)
    }
  }
  t.ok(paused, 'the upload was seen to end')
  t.equal(ndjson(text).at(-1)?.status, 'success')
  t.equal(heldAtEnd, 0, 'no hold once the last line is read')
})

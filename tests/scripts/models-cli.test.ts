// `cnfl models import`: once as an operator runs it (a real process, the Ollama stand-in as
// OLLAMA_URL), then its other paths in-process (quicker than a process each).
import { createHash, randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { ollamaModelName } from '@confluence-bot/shared'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { models } from '../../scripts/models.ts'
import { tempDir } from '../helpers/api.ts'
import { silentPort, standIn } from '../helpers/ollama.ts'
import type { StandInModel, StandInOptions } from '../helpers/ollama-stand-in.ts'
import { runScript } from '../helpers/process.ts'
import { freePort, startRedis } from '../helpers/redis.ts'

const GGUF = Buffer.concat([Buffer.from('GGUF'), randomBytes(1024 * 1024)])
const DIGEST = `sha256:${createHash('sha256').update(GGUF).digest('hex')}`

async function files(t: Test) {
  const dir = await tempDir(t, 'cnfl-models-')
  await writeFile(join(dir, 'tiny.gguf'), GGUF)
  await writeFile(join(dir, 'notes.txt'), 'not a model')
  await writeFile(join(dir, 'chat.tmpl'), '{{ .System }} {{ .Prompt }}')
  return dir
}

/** Runs `models` in this process against `url`, with its stdout and stderr captured. */
async function run(t: Test, url: string, args: string[], cwd: string, redisUrl = redis.url) {
  const previous = { ollama: process.env.OLLAMA_URL, redis: process.env.REDIS_URL }
  process.env.OLLAMA_URL = url
  process.env.REDIS_URL = redisUrl
  const out = { stdout: '', stderr: '' }
  const writes = { stdout: process.stdout.write, stderr: process.stderr.write }
  process.stdout.write = ((chunk: string) => {
    out.stdout += chunk
    return true
  }) as typeof process.stdout.write
  process.stderr.write = ((chunk: string) => {
    out.stderr += chunk
    return true
  }) as typeof process.stderr.write
  try {
    return { code: await models(args, cwd), ...out }
  } finally {
    process.stdout.write = writes.stdout
    process.stderr.write = writes.stderr
    process.env.OLLAMA_URL = previous.ollama
    process.env.REDIS_URL = previous.redis
    t.comment(out.stderr.trim().split('\n').at(-1) ?? '')
  }
}

// The api's Redis, where cnfl holds the name it imports as an api import does.
const redis = await startRedis()
t.teardown(() => redis.stop())
const holdKey = (name: string) => `cnfl:model-import:${ollamaModelName(name)}`

const ollamaWith = (t: Test, options: Partial<StandInOptions> = {}) => standIn(t, options)

t.test('cnfl models import: a progress bar, then the model in Ollama', async (t) => {
  const dir = await files(t)
  const ollama = await ollamaWith(t)
  const result = await runScript(
    'scripts/cnfl.ts',
    ['models', 'import', join(dir, 'tiny.gguf'), '--name', 'acme/tiny:1b', '--system', 'Be brief.'],
    { env: { OLLAMA_URL: ollama.url, REDIS_URL: redis.url, LOG_LEVEL: 'silent' } },
  )
  t.equal(result.code, 0, result.stderr)
  t.match(result.stderr, /uploading \[#{30}\] (\S+ [KM]B) \/ \1\n/)
  t.match(result.stderr, /parsing GGUF\n[\s\S]*success\n$/)
  t.same(JSON.parse(result.stdout), {
    model: 'acme/tiny:1b',
    digest: DIGEST,
    size: GGUF.length,
    status: 'success',
  })
  t.same(ollama.blobs.get(DIGEST), { size: GGUF.length, gguf: true })
  t.match(ollama.requests.find((r) => r.path === '/api/create')?.body, {
    model: 'acme/tiny:1b',
    files: { 'acme-tiny-1b.gguf': DIGEST },
    system: 'Be brief.',
  })
  t.ok(ollama.options.models.some((m) => m.name === 'acme/tiny:1b'))
})

t.test(
  '--template and --parameters reach create; a blob Ollama has is not sent again',
  async (t) => {
    const dir = await files(t)
    const ollama = await ollamaWith(t)
    const args = [
      'import',
      'tiny.gguf',
      '--name',
      'llama3.2',
      '--replace',
      '--template',
      'chat.tmpl',
      '--parameters',
      '{"temperature":0.2}',
    ]
    t.equal((await run(t, ollama.url, args, dir)).code, 0)
    t.match(ollama.requests.find((r) => r.path === '/api/create')?.body, {
      template: '{{ .System }} {{ .Prompt }}',
      parameters: { temperature: 0.2 },
    })
    const again = await run(t, ollama.url, ['import', 'tiny.gguf', '--name', 'second'], dir)
    t.equal(again.code, 0)
    t.notMatch(again.stderr, /uploading/)
    t.equal(
      ollama.requests.filter((r) => r.method === 'POST' && r.path.startsWith('/api/blobs')).length,
      1,
    )
  },
)

t.test('refusals: a taken name, not GGUF, a missing file, usage', async (t) => {
  const dir = await files(t)
  const ollama = await ollamaWith(t)
  await t.rejects(run(t, ollama.url, ['import', 'tiny.gguf', '--name', 'LLAMA3.2'], dir), {
    message: /already has a model named llama3\.2:latest: add --replace/,
  })
  await t.rejects(run(t, ollama.url, ['import', 'notes.txt', '--name', 'x'], dir), {
    message: 'notes.txt is not a GGUF file (it does not begin with "GGUF")',
  })
  await t.rejects(run(t, ollama.url, ['import', 'absent.gguf', '--name', 'x'], dir), {
    message: /cannot read absent\.gguf/,
  })
  await t.rejects(
    run(t, ollama.url, ['import', 'tiny.gguf', '--name', 'x', '--template', 'no.tmpl'], dir),
    { message: /cannot read --template no\.tmpl/ },
  )
  for (const args of [
    ['import', 'tiny.gguf'],
    ['import', '--name', 'x'],
    ['import', 'a', 'b', '--name', 'x'],
  ]) {
    await t.rejects(run(t, ollama.url, args, dir), { message: /takes one FILE and --name NAME/ })
  }
  for (const parameters of ['[1]', '{oops']) {
    await t.rejects(
      run(t, ollama.url, ['import', 'tiny.gguf', '--name', 'x', '--parameters', parameters], dir),
      { message: /--parameters must be a JSON object/ },
    )
  }
  t.equal((await run(t, ollama.url, ['--help'], dir)).code, 0)
  t.equal((await run(t, ollama.url, ['list'], dir)).code, 2)
  t.same(
    ollama.requests.filter((r) => r.path.startsWith('/api/blobs')),
    [],
  )
})

t.test(
  'a taken name is refused before a byte of the file is sent; --replace sends it',
  async (t) => {
    const dir = await files(t)
    const ollama = await ollamaWith(t)
    await t.rejects(run(t, ollama.url, ['import', 'tiny.gguf', '--name', 'llama3.2:latest'], dir), {
      message: /already has a model named llama3\.2:latest: add --replace/,
    })
    t.equal(ollama.blobBytes, 0, 'no byte of the file reached Ollama')
    t.same(
      ollama.requests.map((r) => `${r.method} ${r.path}`),
      ['GET /api/tags'],
    )
    const replaced = await run(
      t,
      ollama.url,
      ['import', 'tiny.gguf', '--name', 'llama3.2', '--replace'],
      dir,
    )
    t.equal(replaced.code, 0)
    t.equal(ollama.blobBytes, GGUF.length)
    t.equal(ollama.options.models.filter((m) => m.name === 'llama3.2:latest').length, 1)
  },
)

t.test("Ollama's failures are one line each, and no model is made", async (t) => {
  const dir = await files(t)
  const ollama = await ollamaWith(t)
  const importing = (name: string) =>
    run(t, ollama.url, ['import', 'tiny.gguf', '--name', name], dir)
  ollama.options.faultFor = ({ method, path }) =>
    method === 'POST' && path.startsWith('/api/blobs')
      ? { failBeforeOutput: { status: 500, error: 'no space left on device' } }
      : undefined
  await t.rejects(importing('a'), { message: /no space left on device/ })
  ollama.options.faultFor = ({ path }) =>
    path === '/api/create'
      ? { failBeforeOutput: { status: 400, error: 'bad template' } }
      : undefined
  await t.rejects(importing('b'), { message: 'bad template' })
  ollama.options.faultFor = () => ({
    failAfterTokens: { count: 1, error: 'unsupported architecture' },
  })
  await t.rejects(importing('c'), { message: 'Ollama did not create c: unsupported architecture' })
  ollama.options.faultFor = () => ({ truncateAfterTokens: 1 })
  await t.rejects(importing('d'), {
    message:
      'Ollama did not create d: its answer ended before it said success; the model may not exist; check `ollama list`',
  })
  // The connection cut mid-stream: not just undici's "other side closed".
  ollama.options.faultFor = () => ({ truncateAfterTokens: 1, truncateMode: 'destroy' })
  await t.rejects(importing('d'), {
    message:
      /^Ollama closed the stream of creating d before it finished \(.+\): the model may not exist; check `ollama list`$/,
  })
  t.notOk(ollama.options.models.some((m) => /^[abcd]:/.test(m.name)))
  await t.rejects(run(t, 'http://127.0.0.1:1', ['import', 'tiny.gguf', '--name', 'e'], dir), {
    message: /Ollama is not reachable at OLLAMA_URL=http:\/\/127\.0\.0\.1:1/,
  })
  const foreign = createServer((_req, res) => {
    res.writeHead(500, { 'content-type': 'application/json' })
    res.end('{"error":"database locked"}')
  })
  await new Promise<void>((resolve) => foreign.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => foreign.close(resolve)))
  const { port } = foreign.address() as { port: number }
  await t.rejects(run(t, `http://127.0.0.1:${port}`, ['import', 'tiny.gguf', '--name', 'f'], dir), {
    message: /database locked/,
  })
})

t.test('a name Ollama would refuse is refused before the file is read or sent', async (t) => {
  const dir = await files(t)
  const ollama = await ollamaWith(t)
  for (const name of ['../../etc/x', 'bad name', 'x:', `${'a'.repeat(257)}`]) {
    const refused = run(t, ollama.url, ['import', 'tiny.gguf', '--name', name], dir)
    await t.rejects(refused, { message: /is not a model name Ollama accepts/ })
  }
  t.same(ollama.requests, [], 'Ollama was not asked anything')
})

t.test(
  'a model made under the name during the upload (an api import, another tool) is not overwritten',
  async (t) => {
    const dir = await files(t)
    const ollama = await ollamaWith(t)
    // Another writer creates the name while this file is hashed and uploaded.
    ollama.options.faultFor = ({ method, path }) => {
      if (method === 'HEAD' && path.startsWith('/api/blobs/')) {
        ollama.options.models.push({
          ...(ollama.options.models[0] as StandInModel),
          name: 'race:latest',
        })
      }
      return undefined
    }
    await t.rejects(run(t, ollama.url, ['import', 'tiny.gguf', '--name', 'race'], dir), {
      message:
        'Ollama already has a model named race:latest (made while the file was uploading): add --replace to replace it',
    })
    t.notOk(
      ollama.requests.some((r) => r.path === '/api/create'),
      'create was not called',
    )
    ollama.options.faultFor = undefined
    const replaced = await run(
      t,
      ollama.url,
      ['import', 'tiny.gguf', '--name', 'race', '--replace'],
      dir,
    )
    t.equal(replaced.code, 0)
    t.equal(ollama.options.models.filter((m) => m.name === 'race:latest').length, 1)
  },
)

t.test(
  "the name is held in the api's Redis while cnfl imports it, as an api import holds it",
  async (t) => {
    const dir = await files(t)
    const ollama = await ollamaWith(t)
    const keys = new Redis(redis.url)
    t.teardown(() => keys.quit())
    // An api import of the name runs: cnfl refuses it before reading the file.
    await keys.set(holdKey('held'), 'an-api-import', 'PX', 5000)
    await t.rejects(run(t, ollama.url, ['import', 'tiny.gguf', '--name', 'held'], dir), {
      message:
        /^held is being imported right now \(through the api, or by another cnfl\): wait for that import to end; if it is gone, its hold on the name lapses within [1-5] s$/,
    })
    t.equal(ollama.blobBytes, 0)
    t.equal(
      await keys.get(holdKey('held')),
      'an-api-import',
      "the other import's hold is untouched",
    )
    // While cnfl uploads, the name is held (an api import of it would be a 409); let go after.
    let during: Promise<number> | undefined
    ollama.options.faultFor = ({ method, path }) => {
      if (method === 'HEAD' && path.startsWith('/api/blobs/')) during = keys.exists(holdKey('mine'))
      return undefined
    }
    t.equal((await run(t, ollama.url, ['import', 'tiny.gguf', '--name', 'mine'], dir)).code, 0)
    t.equal(await during, 1, 'held during the upload')
    t.equal(await keys.exists(holdKey('mine')), 0, 'let go once done')
    ollama.options.faultFor = undefined
    // A Redis that refuses writes: one line naming it, nothing imported.
    await keys.config('SET', 'maxmemory-policy', 'noeviction')
    await keys.config('SET', 'maxmemory', '1')
    const refused = run(t, ollama.url, ['import', 'tiny.gguf', '--name', 'oom'], dir)
    await t.rejects(refused, {
      message:
        /^Redis at REDIS_URL=redis:\/\/127\.0\.0\.1:\d+ did not record the hold on the name oom \(OOM /,
    })
    await keys.config('SET', 'maxmemory', '0')
    // Redis unreachable: a warning, and the import goes on (the name still checked before create).
    const gone = `redis://127.0.0.1:${await freePort()}`
    const alone = await run(t, ollama.url, ['import', 'tiny.gguf', '--name', 'alone'], dir, gone)
    t.equal(alone.code, 0)
    t.match(
      alone.stderr,
      /Redis at REDIS_URL=redis:\/\/127\.0\.0\.1:\d+ is unreachable: an api import of alone at the same time is not kept out/,
    )
    t.notOk(ollama.options.models.some((m) => m.name === 'oom:latest'))
    t.ok(ollama.options.models.some((m) => m.name === 'alone:latest'))

    // A Redis that accepts the connection and never answers: the same warning, no hang.
    const hung = `redis://127.0.0.1:${await silentPort(t)}`
    const waited = await run(t, ollama.url, ['import', 'tiny.gguf', '--name', 'hung'], dir, hung)
    t.equal(waited.code, 0)
    t.match(waited.stderr, /is unreachable: an api import of hung at the same time is not kept out/)

    // A Redis that wants a password it was not given, or another one: an error, nothing sent.
    await keys.config('SET', 'requirepass', 'the-api-password')
    t.teardown(() => keys.config('SET', 'requirepass', ''))
    const before = ollama.blobBytes
    for (const url of [redis.url, redis.url.replace('redis://', 'redis://:wrong-password@')]) {
      await t.rejects(run(t, ollama.url, ['import', 'tiny.gguf', '--name', 'locked'], dir, url), {
        message:
          /^Redis at REDIS_URL=redis:\/\/\S+ refused its credentials \((NOAUTH|WRONGPASS)[^)]*\): put the api's Redis password in REDIS_URL \(redis:\/\/:PASSWORD@host:port\)$/,
      })
    }
    t.equal(ollama.blobBytes, before, 'no byte of the file sent')
    await keys.config('SET', 'requirepass', '')
  },
)

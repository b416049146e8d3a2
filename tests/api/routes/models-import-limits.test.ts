// POST /api/models/import's limits over a raw socket, as a client still sending a multi-GB file
// meets them: a refusal (too large, not GGUF, the name being imported already, too many imports,
// a full MODEL_IMPORT_DIR) is answered while the client is still sending, with the connection
// closed rather than the rest of the body read; the name is held in Redis for every api replica
// while its import runs, and let go however it ends; part files a crashed api left are removed
// at start.
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ollamaModelName } from '@confluence-bot/shared'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { ADMIN_KEY, listenTestApp, tempDir } from '../../helpers/api.ts'
import { standIn } from '../../helpers/ollama.ts'
import type { OllamaStandIn } from '../../helpers/ollama-stand-in.ts'
import { startRedis, type TestRedis } from '../../helpers/redis.ts'

const LIMIT = 64 * 1024
const GGUF_CHUNK = Buffer.concat([Buffer.from('GGUF'), randomBytes(8 * 1024)])

type Api = { url: string; port: number }
type Rig = { ollama: OllamaStandIn; redis: TestRedis; dir: string; api(env?: object): Promise<Api> }

async function rig(t: Test): Promise<Rig> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const ollama = await standIn(t)
  const dir = join(await tempDir(t, 'cnfl-import-limits-'), 'imports')
  return {
    ollama,
    redis,
    dir,
    async api(env = {}) {
      const { url } = await listenTestApp(t, {
        OLLAMA_URL: ollama.url,
        REDIS_URL: redis.url,
        MODEL_IMPORT_DIR: dir,
        MODEL_IMPORT_LIMIT: String(LIMIT),
        ADMIN_API_KEYS: ADMIN_KEY,
        ...env,
      })
      return { url, port: Number(new URL(url).port) }
    },
  }
}

/** A raw HTTP/1.1 upload: headers and a first part sent, the rest left to the test. */
type Upload = {
  socket: Socket
  /** Sends one more chunk of a chunked body. */
  chunk(bytes: Buffer): void
  /** Ends a chunked body. */
  end(): void
  /** The answer's head and body, once the server has sent all of it (or closed). */
  answer: Promise<{ status: number; headers: Record<string, string>; body: string }>
  /** Resolves when the server has ended or reset the connection. */
  closed: Promise<void>
}

function upload(
  api: Api,
  query: string,
  options: { length?: number; first?: Buffer; type?: string | null } = {},
): Upload {
  const socket = connect(api.port, '127.0.0.1')
  const framing =
    options.length === undefined
      ? 'transfer-encoding: chunked\r\n'
      : `content-length: ${options.length}\r\n`
  socket.write(
    `POST /api/models/import?${query} HTTP/1.1\r\nhost: 127.0.0.1\r\n` +
      `authorization: Bearer ${ADMIN_KEY}\r\n${contentType(options.type)}${framing}\r\n`,
  )
  const chunked = options.length === undefined
  const send = (bytes: Buffer) => {
    if (socket.destroyed) return
    if (chunked) socket.write(`${bytes.length.toString(16)}\r\n`)
    socket.write(bytes)
    if (chunked) socket.write('\r\n')
  }
  if (options.first) send(options.first)
  let raw = ''
  const closed = new Promise<void>((resolve) => {
    socket.on('close', () => resolve())
    // A reset after the answer (the server closing with unread bytes) is how it may end.
    socket.on('error', () => resolve())
  })
  socket.on('data', (data: Buffer) => {
    raw += data.toString('latin1')
  })
  const answer = (async () => {
    for (let i = 0; i < 600; i++) {
      const parsed = parse(raw)
      if (parsed) return parsed
      if (socket.destroyed && !parse(raw)) break
      await new Promise((wake) => setTimeout(wake, 25))
    }
    const parsed = parse(raw)
    if (!parsed) throw new Error(`no complete answer: ${JSON.stringify(raw.slice(0, 300))}`)
    return parsed
  })()
  // A test that cuts the connection itself never reads the answer.
  answer.catch(() => undefined)
  return { socket, chunk: send, end: () => socket.write('0\r\n\r\n'), answer, closed }
}

/** The Content-Type header line: the route's own type unless the test says (null: none). */
const contentType = (type: string | null = 'application/octet-stream') =>
  type === null ? '' : `content-type: ${type}\r\n`

/** A complete HTTP answer (Content-Length or chunked), or undefined while it is not. */
function parse(raw: string) {
  const split = raw.indexOf('\r\n\r\n')
  if (split === -1) return undefined
  const [statusLine, ...lines] = raw.slice(0, split).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  let body = raw.slice(split + 4)
  if (headers['content-length'] !== undefined) {
    if (body.length < Number(headers['content-length'])) return undefined
  } else if (headers['transfer-encoding'] === 'chunked') {
    if (!body.endsWith('0\r\n\r\n')) return undefined
    let text = ''
    let rest = body
    for (;;) {
      const eol = rest.indexOf('\r\n')
      const size = Number.parseInt(rest.slice(0, eol), 16)
      if (size === 0) break
      text += rest.slice(eol + 2, eol + 2 + size)
      rest = rest.slice(eol + 4 + size)
    }
    body = text
  }
  return { status: Number(statusLine?.split(' ')[1]), headers, body }
}

const json = (body: string) => JSON.parse(body) as Record<string, unknown>
const partFiles = async (dir: string) =>
  (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.part'))

async function until(what: string, check: () => Promise<boolean> | boolean) {
  for (let i = 0; i < 400; i++) {
    if (await check()) return
    await new Promise((wake) => setTimeout(wake, 25))
  }
  throw new Error(`timed out waiting for ${what}`)
}

const holdKey = (name: string) => `cnfl:model-import:${ollamaModelName(name)}`

const models = (ollama: OllamaStandIn, name: string) =>
  ollama.options.models.filter((m) => m.name === name).length

t.test('too large, declared: 413 at once, the connection closed, no byte read', async (t) => {
  const r = await rig(t)
  const api = await r.api()
  const sent = upload(api, 'name=huge', { length: LIMIT + 1 })
  const answer = await sent.answer
  t.equal(answer.status, 413)
  t.equal(answer.headers.connection, 'close')
  t.match(json(answer.body), { error: 'payload_too_large', message: /MODEL_IMPORT_LIMIT/ })
  await sent.closed
  t.same(await partFiles(r.dir), [])
})

t.test('too large, chunked: 413 once past the limit, while the client still sends', async (t) => {
  const r = await rig(t)
  const api = await r.api()
  const sent = upload(api, 'name=huge', { first: GGUF_CHUNK })
  // Past the limit; the client then waits for the answer instead of sending the rest.
  for (let i = 0; i < 8; i++) sent.chunk(randomBytes(9 * 1024))
  const answer = await sent.answer
  t.equal(answer.status, 413)
  t.equal(answer.headers.connection, 'close')
  t.match(json(answer.body), { error: 'payload_too_large' })
  await sent.closed
  await until('the part file removed', async () => (await partFiles(r.dir)).length === 0)
  t.same(
    r.ollama.requests.filter((q) => q.path.startsWith('/api/blobs')),
    [],
  )
  // The refused import let go of the name before it answered: a retry at once is not a 409.
  const retry = upload(api, 'name=huge', { first: GGUF_CHUNK })
  retry.end()
  const retried = await retry.answer
  t.equal(retried.status, 200, retried.body)
})

t.test('not GGUF: 415 as soon as the first bytes arrive, the rest never read', async (t) => {
  const r = await rig(t)
  const api = await r.api()
  const zip = upload(api, 'name=zip', { first: Buffer.from('PK\u0003\u0004 an archive') })
  const answer = await zip.answer
  t.equal(answer.status, 415)
  t.equal(answer.headers.connection, 'close')
  t.match(json(answer.body), { error: 'not_gguf', message: /does not begin with "GGUF"/ })
  await zip.closed
  // Declared (within the limit), only its first bytes sent.
  const declared = upload(api, 'name=zip', { length: LIMIT - 1, first: Buffer.from('MZ') })
  const early = await declared.answer
  t.equal(early.status, 415, early.body)
  await declared.closed
  await until('no part file', async () => (await partFiles(r.dir)).length === 0)
})

t.test('one name imported twice at once, on two api replicas: one model, one 409', async (t) => {
  const r = await rig(t)
  const first = await r.api({ MODEL_IMPORT_LOCK_MS: '1000' })
  const second = await r.api({ MODEL_IMPORT_LOCK_MS: '1000' })
  const a = upload(first, 'name=twice:1b', { first: GGUF_CHUNK })
  await until('the first upload under way', async () => (await partFiles(r.dir)).length === 1)
  const keys = new Redis(r.redis.url)
  t.teardown(() => keys.quit())
  t.ok((await keys.pttl(holdKey('twice:1b'))) > 0, 'the hold expires if its api dies')
  // Longer than the lock's time to live: it is renewed while the import runs.
  await new Promise((wake) => setTimeout(wake, 1500))
  for (const api of [second, first]) {
    const b = upload(api, 'name=TWICE:1b', { first: GGUF_CHUNK })
    const refused = await b.answer
    t.equal(refused.status, 409)
    t.equal(refused.headers.connection, 'close')
    t.match(json(refused.body), {
      error: 'import_in_progress',
      message: /TWICE:1b is being imported already/,
    })
    await b.closed
  }
  a.chunk(GGUF_CHUNK)
  a.end()
  const done = await a.answer
  t.equal(done.status, 200, done.body)
  t.equal(models(r.ollama, 'twice:1b'), 1)
  t.equal(r.ollama.requests.filter((q) => q.path === '/api/create').length, 1)
  // Let go once done: the same name can be imported again (replacing it).
  t.equal(await keys.exists(holdKey('twice:1b')), 0)
  const again = upload(second, 'name=twice:1b&replace=true', { first: GGUF_CHUNK })
  again.end()
  t.equal((await again.answer).status, 200)
})

t.test('the hold on a name is let go when the client leaves, or the import fails', async (t) => {
  const r = await rig(t)
  const api = await r.api()
  const keys = new Redis(r.redis.url)
  t.teardown(() => keys.quit())
  const held = () => keys.exists(holdKey('gone'))
  const left = upload(api, 'name=gone', { first: GGUF_CHUNK })
  await until('the upload under way', async () => (await held()) === 1)
  left.socket.destroy()
  await until('the hold let go', async () => (await held()) === 0)
  await until('the part file removed', async () => (await partFiles(r.dir)).length === 0)
  r.ollama.options.faultFor = ({ path }) =>
    path === '/api/create' ? { failBeforeOutput: { status: 500, error: 'bad file' } } : undefined
  const failed = upload(api, 'name=gone', { first: GGUF_CHUNK })
  failed.end()
  t.equal((await failed.answer).status, 502)
  t.equal(await held(), 0)
})

t.test('a hold left by an api that died lapses; until then the name is refused', async (t) => {
  const r = await rig(t)
  const api = await r.api()
  const keys = new Redis(r.redis.url)
  t.teardown(() => keys.quit())
  // As an api that died mid-import leaves it: no one renews it any more.
  await keys.set(holdKey('orphan'), 'a-dead-api', 'PX', 1500)
  const early = upload(api, 'name=orphan', { first: GGUF_CHUNK })
  const refused = await early.answer
  t.equal(refused.status, 409)
  // When to retry: what is left of the hold, in whole seconds (1 or 2 here, as time passes).
  t.match(refused.headers['retry-after'], /^[12]$/)
  t.match(json(refused.body), {
    error: 'import_in_progress',
    message: new RegExp(
      `if it is gone \\(its process died\\), the hold on the name lapses within ${refused.headers['retry-after']} s`,
    ),
  })
  await until('the hold lapsed', async () => (await keys.exists(holdKey('orphan'))) === 0)
  const late = upload(api, 'name=orphan', { first: GGUF_CHUNK })
  late.end()
  t.equal((await late.answer).status, 200)
})

t.test('past MODEL_IMPORT_CONCURRENCY: 503 with Retry-After before the body', async (t) => {
  const r = await rig(t)
  const api = await r.api({ MODEL_IMPORT_CONCURRENCY: '1' })
  const a = upload(api, 'name=one', { first: GGUF_CHUNK })
  await until('the first upload under way', async () => (await partFiles(r.dir)).length === 1)
  const b = upload(api, 'name=two', { first: GGUF_CHUNK })
  const busy = await b.answer
  t.equal(busy.status, 503)
  t.equal(busy.headers.connection, 'close')
  t.ok(Number(busy.headers['retry-after']) > 0, 'Retry-After')
  t.match(json(busy.body), { error: 'imports_busy', message: /MODEL_IMPORT_CONCURRENCY/ })
  await b.closed
  a.end()
  t.equal((await a.answer).status, 200)
  // The slot is free again, and the name "two" was not left held.
  const c = upload(api, 'name=two', { first: GGUF_CHUNK })
  c.end()
  t.equal((await c.answer).status, 200)
  t.equal(models(r.ollama, 'two:latest'), 1)
})

t.test('a full MODEL_IMPORT_DIR: 503 naming it, the part file removed', async (t) => {
  const r = await rig(t)
  const api = await r.api()
  // The disk fills under the part files (the kernel's own errors, raised where it would).
  const parts = new Set<number>()
  const real = { open: fs.open, write: fs.write, writev: fs.writev }
  let code = 'ENOSPC'
  const full = () =>
    Object.assign(new Error(`${code}: no space left on device, write`), {
      code,
      errno: -28,
      syscall: 'write',
    })
  fs.open = ((path: string, ...rest: unknown[]) => {
    const callback = rest.pop() as (err: Error | null, fd?: number) => void
    real.open(path, ...(rest as []), (err: Error | null, fd?: number) => {
      if (String(path).endsWith('.gguf.part') && fd !== undefined) parts.add(fd)
      callback(err, fd)
    })
  }) as typeof fs.open
  fs.write = ((fd: number, ...rest: unknown[]) => {
    if (!parts.has(fd)) return (real.write as (...a: unknown[]) => void)(fd, ...rest)
    const callback = rest.pop() as (err: Error) => void
    process.nextTick(callback, full())
  }) as typeof fs.write
  fs.writev = ((fd: number, ...rest: unknown[]) => {
    if (!parts.has(fd)) return (real.writev as (...a: unknown[]) => void)(fd, ...rest)
    const callback = rest.pop() as (err: Error) => void
    process.nextTick(callback, full())
  }) as typeof fs.writev
  t.teardown(() => Object.assign(fs, real))
  for (const quota of ['ENOSPC', 'EDQUOT']) {
    code = quota
    const sent = upload(api, 'name=full', { first: GGUF_CHUNK })
    for (let i = 0; i < 4; i++) sent.chunk(GGUF_CHUNK)
    const answer = await sent.answer
    t.equal(answer.status, 503)
    t.equal(answer.headers.connection, 'close')
    t.match(json(answer.body), {
      error: 'import_dir_full',
      message: new RegExp(`MODEL_IMPORT_DIR=${r.dir} is full \\(${quota}\\)`),
    })
    await sent.closed
    await until('the part file removed', async () => (await partFiles(r.dir)).length === 0)
  }
  t.equal(models(r.ollama, 'full:latest'), 0)
})

t.test('at start, part files no live import owns are removed', async (t) => {
  const r = await rig(t)
  await mkdir(r.dir, { recursive: true })
  const gone = spawn(process.execPath, ['-e', '0'])
  await new Promise((resolve) => gone.once('exit', resolve))
  const names = {
    dead: `${gone.pid}-0123abcd.gguf.part`,
    // A live import of another api process on this machine (here: the test runner).
    live: `${process.ppid}-4567cdef.gguf.part`,
    // This very pid: left by a crashed process that had it (a container restarted as pid 1).
    mine: `${process.pid}-89abcdef.gguf.part`,
    // Not the api's own naming: a browser's download in progress, another tool's file.
    browser: 'llama.gguf.part',
    pidless: '0a1b2c3d4e5f6a7b.gguf.part',
    other: 'notes.txt',
  }
  for (const name of Object.values(names)) await writeFile(join(r.dir, name), 'GGUF')
  await r.api()
  t.same(
    (await readdir(r.dir)).sort(),
    [names.live, names.browser, names.pidless, names.other].sort(),
  )
})

t.test(
  'curl -T, as the README uploads: the refusal reaches it long before the file is sent',
  async (t) => {
    const curl = await promisify(execFile)('curl', ['--version']).catch(() => undefined)
    if (curl === undefined) return t.plan(0, 'curl is not installed')
    const r = await rig(t)
    const api = await r.api()
    const files = await tempDir(t, 'cnfl-import-curl-')
    const size = 64 * 1024 * 1024
    const cases = [
      { name: 'archive.zip', head: 'PK\u0003\u0004', status: 415 },
      { name: 'huge.gguf', head: 'GGUF', status: 413 },
    ]
    for (const file of cases) {
      const path = join(files, file.name)
      const bytes = Buffer.alloc(size, 1)
      bytes.write(file.head, 0, 'latin1')
      await writeFile(path, bytes)
      // Chunked: curl does not declare the size, so the limit is met as the body arrives.
      const { stdout } = await promisify(execFile)('curl', [
        '-sS',
        '-T',
        path,
        '-X',
        'POST',
        '-H',
        `Authorization: Bearer ${ADMIN_KEY}`,
        '-H',
        'Content-Type: application/octet-stream',
        '-H',
        'Transfer-Encoding: chunked',
        '-w',
        '\n%{http_code} %{size_upload}',
        `${api.url}/api/models/import?name=curl`,
      ])
      const [body, tail] = stdout.split('\n')
      const [status, uploaded] = (tail as string).split(' ').map(Number)
      t.equal(status, file.status, `${file.name}: ${body}`)
      t.ok((uploaded as number) < size / 2, `${file.name}: curl sent ${uploaded} of ${size} bytes`)
    }
  },
)

t.test(
  'a wrong or missing Content-Type: 415 naming the type, before the body is read',
  async (t) => {
    const r = await rig(t)
    const api = await r.api()
    // curl's --data-binary default, none (curl -T), text, JSON: the JSON parser never reads it.
    for (const type of [
      'application/x-www-form-urlencoded',
      null,
      'text/plain',
      'application/json',
    ]) {
      // Declared within MODEL_IMPORT_LIMIT but only begun: an answer now means none of it was
      // waited for.
      const sent = upload(api, 'name=typed', { length: LIMIT - 1, first: GGUF_CHUNK, type })
      const answer = await sent.answer
      t.equal(answer.status, 415, `${type}: ${answer.body}`)
      t.equal(answer.headers.connection, 'close')
      t.match(json(answer.body), {
        error: 'unsupported_media_type',
        message: /Send the GGUF file as the body with Content-Type: application\/octet-stream/,
      })
      await sent.closed
    }
    t.same(await partFiles(r.dir), [])
    t.same(r.ollama.requests, [], 'Ollama was not asked anything')
  },
)

t.test(
  'a MODEL_IMPORT_DIR the api cannot write: 503 naming it and the cause, nothing left',
  async (t) => {
    const r = await rig(t)
    // A file where the directory's parent should be: mkdir fails (ENOTDIR), as on a read-only mount.
    const blocker = join(await tempDir(t, 'cnfl-import-blocked-'), 'a-file')
    await writeFile(blocker, 'not a directory')
    const blocked = join(blocker, 'imports')
    const api = await r.api({ MODEL_IMPORT_DIR: blocked })
    const sent = upload(api, 'name=nowhere', { first: GGUF_CHUNK })
    const answer = await sent.answer
    t.equal(answer.status, 503, answer.body)
    t.equal(answer.headers.connection, 'close')
    t.match(json(answer.body), {
      error: 'import_dir_unwritable',
      message: `MODEL_IMPORT_DIR=${blocked} cannot be written by the api (ENOTDIR)`,
    })
    await sent.closed
    // A directory the api may not write in (EACCES; a read-only one: EROFS): the part file's
    // open fails as the kernel would fail it (this test may run as root, whom modes do not stop).
    const writable = await r.api()
    const real = fs.open
    let code = 'EACCES'
    fs.open = ((path: string, ...rest: unknown[]) => {
      if (!String(path).endsWith('.gguf.part'))
        return (real as (...a: unknown[]) => void)(path, ...rest)
      const callback = rest.pop() as (err: Error) => void
      process.nextTick(callback, Object.assign(new Error(`${code}: open '${path}'`), { code }))
    }) as typeof fs.open
    t.teardown(() => {
      fs.open = real
    })
    for (const cause of ['EACCES', 'EROFS']) {
      code = cause
      const denied = upload(writable, 'name=denied', { first: GGUF_CHUNK })
      const refused = await denied.answer
      t.equal(refused.status, 503, refused.body)
      t.match(json(refused.body), {
        error: 'import_dir_unwritable',
        message: `MODEL_IMPORT_DIR=${r.dir} cannot be written by the api (${cause})`,
      })
      await denied.closed
    }
    fs.open = real
    t.same(await partFiles(r.dir), [])
    // The hold was let go: the name imports once the directory is writable.
    const retry = upload(writable, 'name=denied', { first: GGUF_CHUNK })
    retry.end()
    t.equal((await retry.answer).status, 200)
    t.equal(r.ollama.requests.filter((q) => q.path === '/api/create').length, 1)
  },
)

t.test('a Redis that refuses writes (out of memory): 503 naming Redis, not a 500', async (t) => {
  const r = await rig(t)
  const api = await r.api()
  const keys = new Redis(r.redis.url)
  t.teardown(() => keys.quit())
  await keys.config('SET', 'maxmemory-policy', 'noeviction')
  await keys.config('SET', 'maxmemory', '1')
  const sent = upload(api, 'name=oom', { first: GGUF_CHUNK })
  const answer = await sent.answer
  await keys.config('SET', 'maxmemory', '0')
  t.equal(answer.status, 503, answer.body)
  t.equal(answer.headers.connection, 'close')
  t.match(json(answer.body), {
    error: 'redis_unavailable',
    message: /Redis \(REDIS_URL\) did not record this import's hold on the name oom \(OOM .*\)/,
  })
  await sent.closed
  t.same(await partFiles(r.dir), [])
})

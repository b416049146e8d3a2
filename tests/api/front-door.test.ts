import { readdir, readFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { JobName, QUEUE_PREFIX, QueueName } from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t, { type Test } from 'tap'
import { ADMIN_KEY, bearer, listenTestApp, READER_KEY, tempDir } from '../helpers/api.ts'
import { buildExportZip } from '../helpers/confluence-export.ts'
import { generatedSpace } from '../helpers/ingest.ts'
import { standIn } from '../helpers/ollama.ts'
import { startRedis } from '../helpers/redis.ts'
import { jsonHeaders, wire } from '../helpers/wire.ts'

// The front door over real sockets: error answers to requests that carried a body, bodies of the
// wrong type, requests from other sites' pages, rebound host names, and slow bodies.

const keys = { API_KEYS: READER_KEY, ADMIN_API_KEYS: ADMIN_KEY }
const chatBody = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] })
const basic = (password: string) =>
  `Basic ${Buffer.from(`operator:${password}`).toString('base64')}`

t.test('an error raised after the body was read is answered, not dropped', async (t) => {
  // Node marks a request destroyed once its body has been read: the answer must still go out.
  const down = await listenTestApp(t, { OLLAMA_URL: 'http://127.0.0.1:9' })
  for (const [path, body] of [
    ['/api/chat', chatBody],
    ['/api/generate', '{"prompt":"hi"}'],
    ['/api/pull', '{"name":"tinyllama"}'],
  ] as const) {
    const res = await wire(`${down.url}${path}`, { method: 'POST', headers: jsonHeaders(), body })
    t.equal(res.status, 503, path)
    t.match(res.type, /^application\/json/)
    t.match(res.json, { error: 'ollama_unavailable', statusCode: 503, message: /OLLAMA_URL/ })
  }
  const ollama = await standIn(t)
  const up = await listenTestApp(t, { OLLAMA_URL: ollama.url })
  const unknown = await wire(`${up.url}/api/chat`, {
    method: 'POST',
    headers: jsonHeaders(),
    body: JSON.stringify({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
  })
  t.equal(unknown.status, 404)
  t.match(unknown.json, { error: 'model_not_found', statusCode: 404 })
  const privateUrl = await wire(`${up.url}/api/sources`, {
    method: 'POST',
    headers: jsonHeaders(),
    body: JSON.stringify({
      name: 'x',
      kind: 'cloud',
      base_url: 'http://10.1.2.3/wiki',
      spaces: ['ENG'],
    }),
  })
  t.equal(privateUrl.status, 400)
  t.match(privateUrl.json, { error: 'source_refused', message: /private/ })
})

async function withSource(t: Test, env: Record<string, string> = {}) {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const queue = new Queue(QueueName.sync, { connection: { url: redis.url }, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  const { url } = await listenTestApp(t, {
    ...keys,
    REDIS_URL: redis.url,
    CONFLUENCE_ALLOWED_HOSTS: 'acme.atlassian.net',
    ...env,
  })
  const created = await wire(`${url}/api/sources`, {
    method: 'POST',
    headers: jsonHeaders(ADMIN_KEY),
    body: JSON.stringify({
      name: 'Engineering',
      kind: 'cloud',
      base_url: 'https://acme.atlassian.net/wiki',
      spaces: ['ENG'],
    }),
  })
  t.equal(created.status, 201, created.text)
  return { url, id: (created.json as { id: string }).id, queue }
}

t.test('a JSON route refuses a stream or a file body (415) and the api stays up', async (t) => {
  const { url, id } = await withSource(t)
  for (const type of ['application/octet-stream', 'application/zip', 'multipart/form-data']) {
    const res = await wire(`${url}/api/sources/${id}/sync`, {
      method: 'POST',
      headers: { 'content-type': type, authorization: `Bearer ${ADMIN_KEY}` },
      body: 'PK\u0003\u0004 not json',
    })
    t.equal(res.status, 415, type)
    t.match(res.json, {
      error: 'unsupported_media_type',
      message: /application\/json/,
      statusCode: 415,
    })
  }
  const live = await wire(`${url}/api/health/live`)
  t.equal(live.status, 200, 'the process is still serving')
  // curl -d declares a form type: its JSON body is still read, as Ollama reads it.
  const curl = await wire(`${url}/api/sources/${id}/sync`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Bearer ${ADMIN_KEY}`,
    },
    body: '{"full":true}',
  })
  t.equal(curl.status, 202)
  // A body with no Content-Type at all is read as JSON too.
  const untyped = await rawRequest(
    Number(new URL(url).port),
    `POST /api/sources/${id}/sync HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ADMIN_KEY}\r\n` +
      'Content-Length: 13\r\nConnection: close\r\n\r\n{"full":true}',
  )
  t.match(untyped, /^HTTP\/1\.1 202 /)
})

t.test('a page of another site cannot call the API, even with cached credentials', async (t) => {
  const { url, id } = await withSource(t, { API_ALLOWED_ORIGINS: 'https://wiki.acme.com' })
  const own = new URL(url)
  const attempts = [
    { path: `/api/sources/${id}/sync`, auth: basic(ADMIN_KEY) },
    { path: `/api/sources/${id}/sync`, auth: `Bearer ${ADMIN_KEY}` },
    { path: '/api/pull', auth: `Bearer ${ADMIN_KEY}` },
  ]
  for (const origin of ['https://evil.example', 'null', 'http://127.0.0.1.evil.example']) {
    for (const { path, auth } of attempts) {
      const res = await wire(`${url}${path}`, {
        method: 'POST',
        headers: { origin, 'content-type': 'text/plain', authorization: auth },
        body: '{"name":"tinyllama"}',
      })
      t.equal(res.status, 403, `${origin} ${path}`)
      t.match(res.json, { error: 'origin_not_allowed', message: /API_ALLOWED_ORIGINS/ })
    }
  }
  // Basic credentials are the dashboard's only: an API route refuses them whatever the origin.
  const viaBasic = await wire(`${url}/api/sources/${id}/sync`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain', authorization: basic(ADMIN_KEY) },
    body: '{}',
  })
  t.equal(viaBasic.status, 401)
  // The API's own pages and the listed origin may.
  for (const origin of [own.origin, 'https://wiki.acme.com']) {
    const res = await wire(`${url}/api/sources/${id}/sync`, {
      method: 'POST',
      headers: { origin, ...jsonHeaders(ADMIN_KEY) },
      body: '{}',
    })
    t.equal(res.status, 202, origin)
  }
  const dashboard = await wire(`${url}/admin/queues`, {
    headers: { origin: own.origin, authorization: basic(ADMIN_KEY) },
  })
  t.equal(dashboard.status, 200, 'the dashboard still takes the Basic password')
})

/** Sends raw bytes and resolves with what the server wrote until it closed the socket. */
function rawExchange(
  port: number,
  head: string,
  dribble: { byte: string; everyMs: number },
): { answer: Promise<{ text: string; closedAfterMs: number }>; socket: Socket } {
  const socket = connect(port, '127.0.0.1')
  const started = performance.now()
  let text = ''
  const timer = setInterval(() => {
    if (!socket.destroyed) socket.write(dribble.byte)
  }, dribble.everyMs)
  socket.write(head)
  const answer = new Promise<{ text: string; closedAfterMs: number }>((resolve) => {
    socket.on('data', (chunk) => {
      text += chunk.toString()
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      clearInterval(timer)
      resolve({ text, closedAfterMs: performance.now() - started })
    })
  })
  return { answer, socket }
}

t.test('a slow body holds no socket: refused at once, or cut at REQUEST_TIMEOUT_MS', async (t) => {
  const { app, url } = await listenTestApp(t, { ...keys, REQUEST_TIMEOUT_MS: '1500' })
  const port = Number(new URL(url).port)
  const head = (auth: string) =>
    `POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n${auth}content-length: 10000\r\n\r\n{`
  const guard = setTimeout(() => app.close(), 20_000)
  t.teardown(() => clearTimeout(guard))

  // No key: the 401 is sent and the connection closed, the rest of the body never read.
  const anonymous = rawExchange(port, head(''), { byte: ' ', everyMs: 200 })
  const refused = await anonymous.answer
  t.match(refused.text, /^HTTP\/1\.1 401/)
  t.match(refused.text, /connection: close/i)
  t.ok(refused.closedAfterMs < 1500, `closed after ${Math.round(refused.closedAfterMs)} ms`)

  // A valid key: the body must still arrive within REQUEST_TIMEOUT_MS.
  const slow = rawExchange(port, head(`authorization: Bearer ${READER_KEY}\r\n`), {
    byte: ' ',
    everyMs: 200,
  })
  const cut = await slow.answer
  t.match(cut.text, /^HTTP\/1\.1 408/)
  t.ok(cut.closedAfterMs >= 1400, `cut after ${Math.round(cut.closedAfterMs)} ms, not before`)
})

t.test('a rebound host name is refused; loopback names and listed hosts are served', async (t) => {
  // Auth off, as on a laptop: the Host check is what keeps another site's page out.
  const { url } = await listenTestApp(t, { API_ALLOWED_HOSTS: 'bot.acme.test' })
  const port = new URL(url).port
  const get = (host: string) => wire(`${url}/admin/config`, { headers: { host } })
  for (const host of [`rebind.attacker.example:${port}`, 'rebind.attacker.example']) {
    const res = await get(host)
    t.equal(res.status, 403, host)
    t.match(res.json, {
      error: 'host_not_allowed',
      message: /"rebind\.attacker\.example".*API_ALLOWED_HOSTS/,
    })
  }
  for (const host of [
    `127.0.0.1:${port}`,
    `localhost:${port}`,
    `app.localhost:${port}`,
    `[::1]:${port}`,
    'bot.acme.test',
    `BOT.acme.test:${port}`,
  ]) {
    t.equal((await get(host)).status, 200, host)
  }
})

t.test('without keys, a server listening beyond loopback refuses rebound names too', async (t) => {
  // The image's HOST=0.0.0.0 with auth off: a rebinding page sends its own name as Host and as
  // Origin, and would otherwise be an admin.
  const open = await listenTestApp(t, { HOST: '0.0.0.0' })
  const port = new URL(open.url).port
  const rebound = {
    host: `rebind.attacker.example:${port}`,
    origin: `http://rebind.attacker.example:${port}`,
  }
  for (const path of ['/api/me', '/admin/config', '/api/sources']) {
    const res = await wire(`${open.url}${path}`, { headers: rebound })
    t.equal(res.status, 403, path)
    t.match(res.json, { error: 'host_not_allowed' })
  }
  t.equal(
    (await wire(`${open.url}/api/me`, { headers: { host: `192.168.1.20:${port}` } })).status,
    200,
  )
  // With keys, a name is not what stands between a page and the API: any name is answered.
  const keyed = await listenTestApp(t, { HOST: '0.0.0.0', ...keys })
  const res = await wire(`${keyed.url}/api/me`, {
    headers: { host: 'bot.acme.test', ...bearer(READER_KEY) },
  })
  t.equal(res.status, 200, res.text)
})

const admin = { authorization: `Bearer ${ADMIN_KEY}` }

t.test("job ids that name the queue's own keys, hand-made jobs and odd paths", async (t) => {
  const { url, id, queue } = await withSource(t)
  // A job added by hand (the dashboard can) without the data of a source job.
  const handMade = await queue.add(JobName.sync, { note: 'no source' }, { jobId: 'hand-made' })
  const list = await wire(`${url}/api/jobs`, { headers: admin })
  t.equal(list.status, 200, list.text)
  t.same(
    (list.json as { jobs: Array<{ source_id: string }> }).jobs.map((job) => job.source_id),
    [],
    'no source job yet, and the hand-made one is not listed',
  )
  for (const name of ['meta', 'id', 'events', 'completed', 'stalled-check', handMade.id]) {
    const res = await wire(`${url}/api/jobs/${name}`, { headers: admin })
    t.equal(res.status, 404, String(name))
    t.match(res.json, { error: 'job_not_found', statusCode: 404 })
  }
  const sync = await wire(`${url}/api/sources/${id}/sync`, { method: 'POST', headers: admin })
  t.equal(sync.status, 202)
  const long = await wire(`${url}/api/jobs/${'a'.repeat(150)}`, { headers: admin })
  t.equal(long.status, 404, 'an id as long as the schema allows is looked up')
  for (const path of ['/api/jobs/%ff', `/api/jobs/${'a'.repeat(300)}`, '/api/jobs/a%20b']) {
    const res = await wire(`${url}${path}`, { headers: admin })
    t.equal(res.status, 400, path.slice(0, 40))
    t.match(res.type, /^application\/json/)
    t.match(res.json, { error: 'validation_failed', statusCode: 400, message: /./ })
    t.notMatch(res.text, /FST_ERR/)
  }
})

t.test('GET /api/jobs?limit=N answers the N newest source jobs', async (t) => {
  const { url, id, queue } = await withSource(t)
  const other = 'src_0000000000aa'
  for (let i = 0; i < 12; i++) {
    await queue.add(JobName.sync, { source_id: id }, { jobId: `sync-old-${i}` })
  }
  // Many newer jobs that are not source jobs (index upkeep) sit in front of them.
  for (let i = 0; i < 150; i++) {
    await queue.add(JobName.maintain, {}, { jobId: `maintain-${i}` })
  }
  await sleep(5)
  for (let i = 0; i < 3; i++) {
    await queue.add(JobName.purge, { source_id: other }, { jobId: `purge-new-${i}`, delay: 60_000 })
  }
  const ids = async (query: string) => {
    const res = await wire(`${url}/api/jobs?${query}`, { headers: admin })
    t.equal(res.status, 200, res.text)
    return (res.json as { jobs: Array<{ id: string }> }).jobs.map((job) => job.id)
  }
  const ten = await ids('limit=10')
  t.equal(ten.length, 10, 'as many as asked for')
  t.same(ten.slice(0, 3).sort(), ['purge-new-0', 'purge-new-1', 'purge-new-2'], 'newest first')
  t.notOk(ten.some((job) => job.startsWith('maintain')))
  t.equal((await ids(`limit=5&source_id=${id}`)).length, 5)
  t.equal((await ids('')).length, 15, 'the default limit (50) holds all 15')
})

t.test('an upload with a bad schedule is refused before it is stored', async (t) => {
  const exports = await tempDir(t, 'cnfl-exports-')
  const { url } = await withSource(t, { EXPORTS_DIR: exports })
  const dir = await tempDir(t, 'cnfl-zip-')
  const zip = await buildExportZip(generatedSpace(2), {
    spaceKey: 'ENG',
    spaceName: 'Engineering',
    path: join(dir, 'eng.zip'),
  })
  const body = await readFile(zip.path)
  const upload = (query: string, type = 'application/zip') =>
    wire(`${url}/api/sources/export?${query}`, {
      method: 'POST',
      headers: { ...admin, 'content-type': type },
      body,
    })
  const refused = await upload('name=Offline&schedule=every%20full%20moon')
  t.equal(refused.status, 400)
  t.match(refused.json, {
    error: 'validation_failed',
    message: /^querystring\/schedule "every full moon" is not a valid cron pattern/,
  })
  t.same(await readdir(exports), [], 'nothing was kept')
  // Media types are case-insensitive and may carry parameters.
  for (const [i, type] of ['Application/Zip', 'application/zip ; a=b'].entries()) {
    const res = await upload(`name=Offline-${i}&schedule=0%203%20*%20*%20*`, type)
    t.equal(res.status, 201, `${type}: ${res.text}`)
  }
  t.equal((await readdir(exports)).length, 2)
})

/** Sends raw bytes and resolves with everything the server wrote before it closed. */
function rawRequest(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    socket.setTimeout(3_000, () => reject(new Error(`no answer to ${bytes.slice(0, 40)}`)))
    socket.on('data', (chunk) => {
      text += chunk.toString()
    })
    socket.on('error', () => {})
    socket.on('close', () => resolve(text))
    socket.write(bytes)
  })
}

t.test('what Node refuses before the router is answered in the error shape too', async (t) => {
  const { url } = await listenTestApp(t)
  const port = Number(new URL(url).port)
  // HTTP/1.0 may leave Host out; so may any request when no request deadline is set.
  t.match(await rawRequest(port, 'GET /api/health/live HTTP/1.0\r\n\r\n'), /^HTTP\/1\.1 200 /)
  const untimed = await listenTestApp(t, { REQUEST_TIMEOUT_MS: '0' })
  t.match(
    await rawRequest(Number(new URL(untimed.url).port), 'GET /api/health/live HTTP/1.1\r\n\r\n'),
    /^HTTP\/1\.1 400 [\s\S]*"malformed_request"/,
  )
  const cases = [
    ['no Host in HTTP/1.1', 'GET /api/health/live HTTP/1.1\r\n\r\n', 400, 'malformed_request'],
    [
      'Content-Length with Transfer-Encoding',
      `POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}`,
      400,
      'malformed_request',
    ],
    [
      'headers over the limit',
      `GET /api/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      431,
      'headers_too_large',
    ],
  ] as const
  for (const [label, bytes, status, error] of cases) {
    const answer = await rawRequest(port, bytes)
    t.match(answer, new RegExp(`^HTTP/1\\.1 ${status} `), label)
    t.match(answer, /content-type: application\/json/i)
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))
    t.match(body, { error, statusCode: status, message: /./ }, label)
  }
})

t.test('a scheme in capitals and a fully qualified local name are accepted', async (t) => {
  const { url } = await listenTestApp(t, { CONFLUENCE_ALLOWED_HOSTS: 'acme.atlassian.net' })
  const port = new URL(url).port
  const live = await wire(`${url}/api/health/live`, { headers: { host: `localhost.:${port}` } })
  t.equal(live.status, 200, 'localhost. is localhost')
  const refused = await wire(`${url}/api/sources`, {
    method: 'POST',
    headers: jsonHeaders(),
    body: JSON.stringify({
      name: 'Upper',
      kind: 'cloud',
      base_url: 'HTTPS://10.0.0.1/wiki',
      spaces: ['ENG'],
    }),
  })
  t.equal(refused.status, 400)
  t.match(
    refused.json,
    { error: 'source_refused' },
    'the scheme passed the schema; the host check refused it',
  )
})

t.test('jobs are listed by their latest activity', async (t) => {
  const { url, id, queue } = await withSource(t)
  const older = await queue.add(JobName.sync, { source_id: id }, { jobId: 'sync-older' })
  await sleep(5)
  await queue.add(JobName.sync, { source_id: id }, { jobId: 'sync-newer' })
  await sleep(5)
  // The older job runs and finishes last (a retry, or a long sync).
  const { Worker } = await import('bullmq')
  const worker = new Worker(QueueName.sync, null, {
    connection: { url: (queue.opts.connection as { url: string }).url },
    prefix: QUEUE_PREFIX,
    autorun: false,
  })
  t.teardown(() => worker.close())
  const token = 'test-token'
  const next = await worker.getNextJob(token)
  t.equal(next?.id, older.id, 'the worker took the older job')
  await next?.moveToCompleted('done', token, false)
  const res = await wire(`${url}/api/jobs?source_id=${id}&limit=1`, { headers: admin })
  t.same(
    (res.json as { jobs: Array<{ id: string; state: string }> }).jobs.map((job) => [
      job.id,
      job.state,
    ]),
    [['sync-older', 'completed']],
  )
})

t.test('Expect: 100-continue invites the body only once the request is let in', async (t) => {
  const ollama = await standIn(t)
  const { url } = await listenTestApp(t, { ...keys, OLLAMA_URL: ollama.url })
  const port = Number(new URL(url).port)
  const body = '{"prompt":"hi"}'
  const head = (auth: string) =>
    `POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n${auth}` +
    `Content-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`
  // No key: the refusal comes instead of the invitation (the body is never sent).
  const refused = await rawRequest(port, head(''))
  t.match(refused, /^HTTP\/1\.1 401 /)
  t.notMatch(refused, /100 Continue/)
  // A valid key: 100 Continue, then the answer once the body has been sent.
  const answer = await new Promise<string>((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    socket.on('data', (chunk) => {
      text += chunk.toString()
      if (text === 'HTTP/1.1 100 Continue\r\n\r\n') socket.write(body)
    })
    socket.on('close', () => resolve(text))
    socket.write(head(`Authorization: Bearer ${READER_KEY}\r\n`))
  })
  t.match(answer, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /)
})

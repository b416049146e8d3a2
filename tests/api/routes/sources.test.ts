import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { QUEUE_PREFIX, QueueName } from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t, { type Test } from 'tap'
import { ADMIN_KEY, bearer, buildTestApp, READER_KEY, tempDir } from '../../helpers/api.ts'
import { buildExportZip, writeZip } from '../../helpers/confluence-export.ts'
import { generatedSpace, ingestRig, registerRigSource, rigApiEnv } from '../../helpers/ingest.ts'
import { startRedis } from '../../helpers/redis.ts'

// Sources and jobs through the HTTP API: validation, credentials never returned, schedules,
// sync deduplication, export uploads, and (with a real worker) a sync followed to the end and a
// deleted source's chunks purged.

const keys = { API_KEYS: READER_KEY, ADMIN_API_KEYS: ADMIN_KEY }
const admin = bearer(ADMIN_KEY)

async function setup(t: Test, env: Record<string, string> = {}) {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const exports = await tempDir(t, 'cnfl-exports-')
  const app = await buildTestApp(t, {
    ...keys,
    REDIS_URL: redis.url,
    EXPORTS_DIR: exports,
    // Nothing resolves on this offline machine: the public example host is allowed by name.
    CONFLUENCE_ALLOWED_HOSTS: 'acme.atlassian.net',
    ...env,
  })
  const queue = new Queue(QueueName.sync, { connection: { url: redis.url }, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())
  return { app, redis, exports, queue }
}

const cloud = {
  name: 'Engineering',
  kind: 'cloud',
  base_url: 'https://acme.atlassian.net/wiki/',
  spaces: ['ENG', 'OPS'],
  auth: { type: 'basic', username: 'bot@acme.test', token: 'ATATT-secret-token-value' },
}

t.test('a source is registered, listed and shown without its credentials', async (t) => {
  const { app } = await setup(t)
  const created = await app.inject({
    method: 'POST',
    url: '/api/sources',
    headers: admin,
    payload: { ...cloud, labels: { exclude: ['archive'] }, rate_limit: { requests_per_second: 2 } },
  })
  t.equal(created.statusCode, 201, created.body)
  const source = created.json()
  t.match(source, {
    id: /^src_[0-9a-f]{12}$/,
    name: 'Engineering',
    kind: 'cloud',
    base_url: 'https://acme.atlassian.net/wiki',
    spaces: ['ENG', 'OPS'],
    labels: { exclude: ['archive'] },
    rate_limit: { requests_per_second: 2 },
    has_credentials: true,
  })
  t.notMatch(created.body, /secret-token|bot@acme|auth/, 'no credentials in the answer')

  const list = await app.inject({ method: 'GET', url: '/api/sources', headers: admin })
  t.same(list.json().sources, [source])
  const one = await app.inject({ method: 'GET', url: `/api/sources/${source.id}`, headers: admin })
  t.same(one.json(), source)
  t.notMatch(list.body + one.body, /secret-token/)

  const again = await app.inject({
    method: 'POST',
    url: '/api/sources',
    headers: admin,
    payload: cloud,
  })
  t.equal(again.statusCode, 409)
  t.equal(again.json().error, 'source_exists')

  const missing = await app.inject({
    method: 'GET',
    url: '/api/sources/src_000000000000',
    headers: admin,
  })
  t.equal(missing.statusCode, 404)
  t.equal(missing.json().error, 'source_not_found')

  const noCreds = await app.inject({
    method: 'POST',
    url: '/api/sources',
    headers: admin,
    payload: {
      ...cloud,
      name: 'No creds',
      auth: undefined,
      tls: { ca_cert: '-----BEGIN CERTIFICATE-----\nx', reject_unauthorized: false },
    },
  })
  t.equal(noCreds.statusCode, 201)
  t.equal(noCreds.json().has_credentials, false)
  t.same(noCreds.json().tls, { ca_cert: '(set)', reject_unauthorized: false })
  for (const [name, tls] of [
    ['CA only', { ca_cert: '-----BEGIN CERTIFICATE-----\ny' }],
    ['No check', { reject_unauthorized: false }],
  ] as const) {
    const res = await app.inject({
      method: 'POST',
      url: '/api/sources',
      headers: admin,
      payload: { ...cloud, name, tls },
    })
    t.same(res.json().tls, 'ca_cert' in tls ? { ca_cert: '(set)' } : tls, name)
  }
})

t.test(
  'bad source bodies get a 400 that names the problem; readers cannot manage sources',
  async (t) => {
    const { app } = await setup(t)
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...cloud, spaces: [] }, /spaces/],
      [{ ...cloud, kind: 'export' }, /kind/],
      [{ ...cloud, base_url: 'ftp://acme' }, /base_url/],
      [{ ...cloud, auth: { type: 'basic', token: 'x' } }, /auth/],
      [{ ...cloud, base_url: 'http://127.0.0.1:8090' }, /CONFLUENCE_ALLOWED_HOSTS/],
      [{ ...cloud, base_url: 'http://169.254.169.254/latest' }, /link-local/],
      [{ ...cloud, base_url: 'https://wiki.nowhere.invalid' }, /Could not resolve/],
    ]
    for (const [payload, message] of cases) {
      const res = await app.inject({ method: 'POST', url: '/api/sources', headers: admin, payload })
      t.equal(res.statusCode, 400, JSON.stringify(payload))
      t.match(res.json().message, message)
    }
    const reader = await app.inject({
      method: 'POST',
      url: '/api/sources',
      headers: bearer(READER_KEY),
      payload: cloud,
    })
    t.equal(reader.statusCode, 403)
    const list = await app.inject({ method: 'GET', url: '/api/sources', headers: admin })
    t.same(list.json().sources, [], 'nothing was registered')
  },
)

t.test('with Redis down, sources answer 503 and no upload is kept', async (t) => {
  const exports = await tempDir(t, 'cnfl-exports-')
  const app = await buildTestApp(t, {
    ...keys,
    CONFLUENCE_ALLOWED_HOSTS: 'acme.atlassian.net',
    EXPORTS_DIR: exports,
  })
  const res = await app.inject({
    method: 'POST',
    url: '/api/sources',
    headers: admin,
    payload: cloud,
  })
  t.equal(res.statusCode, 503)
  t.match(res.json(), { error: 'redis_unavailable', message: /REDIS_URL/ })
  const zip = await buildExportZip(generatedSpace(1), {
    spaceKey: 'ENG',
    spaceName: 'Engineering',
    path: join(await tempDir(t, 'cnfl-zip-'), 'eng.zip'),
  })
  const upload = await app.inject({
    method: 'POST',
    url: '/api/sources/export?name=x',
    headers: { ...admin, 'content-type': 'application/zip' },
    payload: await readFile(zip.path),
  })
  t.equal(upload.statusCode, 503)
  t.same(await readdir(exports), [])
})

t.test('an allowed internal host is accepted', async (t) => {
  const { app } = await setup(t, { CONFLUENCE_ALLOWED_HOSTS: 'wiki.internal, 127.0.0.1:8090' })
  const res = await app.inject({
    method: 'POST',
    url: '/api/sources',
    headers: admin,
    payload: { ...cloud, kind: 'datacenter', base_url: 'http://127.0.0.1:8090/confluence' },
  })
  t.equal(res.statusCode, 201)
})

t.test(
  'a schedule is a Job Scheduler, removed with its source; a bad cron is refused',
  async (t) => {
    const { app, queue } = await setup(t)
    const bad = await app.inject({
      method: 'POST',
      url: '/api/sources',
      headers: admin,
      payload: { ...cloud, schedule: 'every hour or so' },
    })
    t.equal(bad.statusCode, 400)
    t.match(bad.json().message, /schedule/)
    const none = await app.inject({ method: 'GET', url: '/api/sources', headers: admin })
    t.same(none.json().sources, [], 'the source was not kept')

    const res = await app.inject({
      method: 'POST',
      url: '/api/sources',
      headers: admin,
      payload: { ...cloud, schedule: '0 * * * *' },
    })
    t.equal(res.statusCode, 201)
    const { id } = res.json()
    const schedulers = await queue.getJobSchedulers()
    t.equal(schedulers.length, 1)
    t.equal(schedulers[0]?.pattern, '0 * * * *')

    const deleted = await app.inject({
      method: 'DELETE',
      url: `/api/sources/${id}`,
      headers: admin,
    })
    t.equal(deleted.statusCode, 202)
    t.match(deleted.json(), { job_id: `purge-${id}` })
    t.same(await queue.getJobSchedulers(), [])
    const gone = await app.inject({ method: 'GET', url: `/api/sources/${id}`, headers: admin })
    t.equal(gone.statusCode, 404)
    const twice = await app.inject({ method: 'DELETE', url: `/api/sources/${id}`, headers: admin })
    t.equal(twice.statusCode, 404)
  },
)

t.test(
  'a sync answers 202 with a job id; a second one while it waits is the same job',
  async (t) => {
    const { app } = await setup(t)
    const { id } = (
      await app.inject({ method: 'POST', url: '/api/sources', headers: admin, payload: cloud })
    ).json()
    const first = await app.inject({
      method: 'POST',
      url: `/api/sources/${id}/sync`,
      headers: admin,
      payload: { full: true },
    })
    t.equal(first.statusCode, 202)
    t.equal(first.json().deduplicated, false)
    const second = await app.inject({
      method: 'POST',
      url: `/api/sources/${id}/sync`,
      headers: admin,
    })
    t.same(second.json(), { job_id: first.json().job_id, deduplicated: true })

    const job = await app.inject({
      method: 'GET',
      url: `/api/jobs/${first.json().job_id}`,
      headers: admin,
    })
    t.equal(job.statusCode, 200)
    t.match(job.json(), {
      id: first.json().job_id,
      source_id: id,
      name: 'sync',
      state: 'waiting',
      progress: { discovered: 0, converted: 0, embedded: 0, unchanged: 0, deleted: 0, failed: 0 },
      errors: [],
      attempts: 0,
    })
    const list = await app.inject({
      method: 'GET',
      url: `/api/jobs?source_id=${id}`,
      headers: admin,
    })
    t.same(
      list.json().jobs.map((j: { id: string }) => j.id),
      [first.json().job_id],
    )
    const all = await app.inject({ method: 'GET', url: '/api/jobs?limit=5', headers: admin })
    t.equal(all.json().jobs.length, 1)

    const bad = await app.inject({
      method: 'POST',
      url: `/api/sources/${id}/sync`,
      headers: admin,
      payload: { full: 'yes' },
    })
    t.equal(bad.statusCode, 400)
    const unknown = await app.inject({ method: 'GET', url: '/api/jobs/nope', headers: admin })
    t.equal(unknown.statusCode, 404)
    t.equal(unknown.json().error, 'job_not_found')
    const noSource = await app.inject({
      method: 'POST',
      url: '/api/sources/src_000000000000/sync',
      headers: admin,
    })
    t.equal(noSource.statusCode, 404)
  },
)

t.test('an export zip is uploaded as a source and its first sync is queued', async (t) => {
  const { app, exports, queue } = await setup(t, { EXPORT_UPLOAD_LIMIT: '65536' })
  const dir = await tempDir(t, 'cnfl-zip-')
  const zip = await buildExportZip(generatedSpace(3), {
    spaceKey: 'ENG',
    spaceName: 'Engineering',
    path: join(dir, 'eng.zip'),
  })
  const body = await readFile(zip.path)
  const upload = (payload: Buffer, type = 'application/zip', query = 'name=Offline%20ENG') =>
    app.inject({
      method: 'POST',
      url: `/api/sources/export?${query}`,
      headers: { ...admin, 'content-type': type },
      payload,
    })

  const res = await upload(body)
  t.equal(res.statusCode, 201, res.body)
  t.match(res.json(), { kind: 'export', name: 'Offline ENG', base_url: '', spaces: [] })
  const { id } = res.json()
  t.same(await readdir(exports), [`${id}.zip`], 'kept under EXPORTS_DIR')
  const waiting = await queue.getJobs(['waiting'])
  t.same(
    waiting.map((j) => j.data),
    [{ source_id: id }],
  )

  const taken = await upload(body)
  t.equal(taken.statusCode, 409)
  t.same(await readdir(exports), [`${id}.zip`], 'the refused upload left nothing behind')

  const garbage = await upload(randomBytes(2_000), 'application/zip', 'name=x')
  t.equal(garbage.statusCode, 400)
  t.match(garbage.json(), { error: 'invalid_export', message: /not a readable zip/ })
  await mkdir(join(dir, 'other'), { recursive: true })
  await writeZip(join(dir, 'other', 'plain.zip'), [['readme.txt', 'hi']])
  const noIndex = await upload(
    await readFile(join(dir, 'other', 'plain.zip')),
    'application/zip',
    'name=y',
  )
  t.equal(noIndex.statusCode, 400)
  t.match(noIndex.json().message, /no index.html/)
  const large = await upload(randomBytes(70_000), 'application/octet-stream', 'name=z')
  t.equal(large.statusCode, 413)
  const streamed = await app.inject({
    method: 'POST',
    url: '/api/sources/export?name=s',
    headers: { ...admin, 'content-type': 'application/zip' },
    payload: Readable.from([randomBytes(40_000), randomBytes(40_000)]),
  })
  t.equal(streamed.statusCode, 413, 'an undeclared length is counted as it arrives')
  const wrongType = await app.inject({
    method: 'POST',
    url: '/api/sources/export?name=w',
    headers: { ...admin, 'content-type': 'application/json' },
    payload: '{}',
  })
  t.equal(wrongType.statusCode, 415)
  t.same(await readdir(exports), [`${id}.zip`], 'failed uploads leave no file')
})

t.test(
  'with a worker: a sync followed to the end through the API, then the source purged',
  async (t) => {
    const rig = await ingestRig(t, { pages: generatedSpace(4) })
    await rig.startWorker()
    const app = await buildTestApp(t, { ...keys, ...rigApiEnv(rig) })
    const id = await registerRigSource(t, app, rig, admin)
    const { job_id } = (
      await app.inject({ method: 'POST', url: `/api/sources/${id}/sync`, headers: admin })
    ).json()
    await rig.waitFor(job_id)
    const job = (
      await app.inject({ method: 'GET', url: `/api/jobs/${job_id}`, headers: admin })
    ).json()
    t.match(job, {
      state: 'completed',
      progress: { discovered: 4, converted: 4, embedded: 4, failed: 0 },
      started_at: /^\d{4}-/,
      finished_at: /^\d{4}-/,
    })
    t.ok((await rig.rows()).length > 0)

    const purge = (
      await app.inject({ method: 'DELETE', url: `/api/sources/${id}`, headers: admin })
    ).json()
    const done = await rig.waitFor(purge.job_id)
    t.equal(done.state, 'completed')
    t.same(await rig.rows(), [], 'the source has no chunks left')
    const purgeJob = await app.inject({
      method: 'GET',
      url: `/api/jobs/${purge.job_id}`,
      headers: admin,
    })
    t.match(purgeJob.json(), { name: 'purge', state: 'completed', source_id: id })
    const nope = (
      await app.inject({
        method: 'POST',
        url: '/api/sources',
        headers: admin,
        payload: {
          name: 'Nope',
          kind: 'cloud',
          base_url: rig.confluence.baseUrl,
          spaces: ['NOPE'],
        },
      })
    ).json()
    const failing = (
      await app.inject({ method: 'POST', url: `/api/sources/${nope.id}/sync`, headers: admin })
    ).json()
    await rig.waitFor(failing.job_id)
    const failed = await app.inject({
      method: 'GET',
      url: `/api/jobs/${failing.job_id}`,
      headers: admin,
    })
    t.match(failed.json(), { state: 'failed', failed_reason: /NOPE/, finished_at: /^\d{4}-/ })
    const jobs = await app.inject({ method: 'GET', url: '/api/jobs', headers: admin })
    t.notOk(
      jobs.json().jobs.some((j: { name: string }) => j.name === 'maintain'),
      'index upkeep jobs are not listed',
    )
  },
)

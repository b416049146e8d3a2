import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createSource, getSource, QUEUE_PREFIX, QueueName } from '@confluence-bot/shared'
import { Queue, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { ADMIN_KEY, listenTestApp, READER_KEY, tempDir } from '../../helpers/api.ts'
import { buildExportZip } from '../../helpers/confluence-export.ts'
import type { StandInPage } from '../../helpers/confluence-stand-in.ts'
import { generatedSpace, rigWithApi } from '../../helpers/ingest.ts'
import { startRedis } from '../../helpers/redis.ts'
import { wire } from '../../helpers/wire.ts'

// PUT /api/sources/:id/export: a changed export replaces its source's zip (checked before the old
// one goes), and an incremental sync brings the index to the new export: changed pages indexed
// again, pages no longer in it deleted, no second copy of the space (issue 10, item 6).

const keys = { API_KEYS: READER_KEY, ADMIN_API_KEYS: ADMIN_KEY }
const auth = { authorization: `Bearer ${ADMIN_KEY}` }

async function zipOf(t: Test, pages: StandInPage[]): Promise<Buffer> {
  const dir = await tempDir(t, 'cnfl-zip-')
  const zip = await buildExportZip(pages, {
    spaceKey: 'ENG',
    spaceName: 'Engineering',
    path: join(dir, 'eng.zip'),
  })
  return readFile(zip.path)
}

function send(url: string, method: string, body: Buffer | string, type = 'application/zip') {
  return wire(url, { method, headers: { ...auth, 'content-type': type }, body, deadlineMs: 20_000 })
}

t.test(
  'an export is replaced only by a checked zip, then synced; never while a sync runs',
  async (t) => {
    const redis = await startRedis()
    t.teardown(() => redis.stop())
    const exports = await tempDir(t, 'cnfl-exports-')
    const { url } = await listenTestApp(t, {
      ...keys,
      REDIS_URL: redis.url,
      EXPORTS_DIR: exports,
      EXPORT_UPLOAD_LIMIT: '65536',
      CONFLUENCE_ALLOWED_HOSTS: 'acme.atlassian.net',
    })
    const client = new Redis(redis.url, { maxRetriesPerRequest: null })
    t.teardown(() => client.quit())
    const queue = new Queue(QueueName.sync, { connection: client, prefix: QUEUE_PREFIX })
    t.teardown(() => queue.close())

    const first = await zipOf(t, generatedSpace(3))
    const created = await send(`${url}/api/sources/export?name=Offline`, 'POST', first)
    t.equal(created.status, 201, created.text)
    const id = (created.json as { id: string }).id
    const [waiting] = await queue.getJobs(['waiting'])
    const replace = (body: Buffer | string, type?: string, source = id) =>
      send(`${url}/api/sources/${source}/export`, 'PUT', body, type)
    const zipOnDisk = () => readFile(join(exports, `${id}.zip`))

    const unknown = await replace(first, undefined, 'src_000000000000')
    t.match(unknown, { status: 404, json: { error: 'source_not_found' } })
    const json = await replace('{"zip":1}', 'application/json')
    t.match(json, { status: 415, json: { error: 'unsupported_media_type' } })
    const cloud = await wire(`${url}/api/sources`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'Cloud',
        kind: 'cloud',
        base_url: 'https://acme.atlassian.net/wiki',
        spaces: ['ENG'],
      }),
    })
    const notExport = await replace(first, undefined, (cloud.json as { id: string }).id)
    t.match(notExport, {
      status: 409,
      json: { error: 'not_an_export_source', message: /is a cloud source/ },
    })
    const garbage = await replace(randomBytes(3_000))
    t.match(garbage, {
      status: 400,
      json: { error: 'invalid_export', message: /not a readable zip/ },
    })
    const large = await replace(randomBytes(70_000))
    t.match(large, { status: 413, json: { error: 'payload_too_large' } })
    t.same(await zipOnDisk(), first, 'a refused zip leaves the old one in place')
    t.same(await readdir(exports), [`${id}.zip`], 'and nothing else behind')

    const second = await zipOf(t, generatedSpace(4))
    const replaced = await replace(second)
    t.equal(replaced.status, 202, replaced.text)
    t.same(
      replaced.json,
      { job_id: waiting?.id, deduplicated: true },
      'the sync still waiting reads the new zip',
    )
    t.same(await zipOnDisk(), second, 'the new zip took the old one’s place')
    t.same(await readdir(exports), [`${id}.zip`])

    // A sync under way listed the old zip: the replacement waits for it to finish.
    const worker = new Worker(QueueName.sync, null, { connection: client, prefix: QUEUE_PREFIX })
    t.teardown(() => worker.close())
    const active = await worker.getNextJob('test-token')
    t.equal(active?.id, waiting?.id)
    const third = await zipOf(t, generatedSpace(5))
    const busy = await replace(third)
    t.match(busy, {
      status: 409,
      json: {
        error: 'sync_running',
        message: new RegExp(`job ${waiting?.id}.*once it has finished`),
      },
    })
    t.same(await zipOnDisk(), second, 'the zip is unchanged')
    await active?.moveToCompleted({}, 'test-token', false)
    t.equal((await replace(third)).status, 202, 'replaced once the sync is done')
    t.same(await zipOnDisk(), third)

    // A source the CLI registered before this change kept its zip outside EXPORTS_DIR.
    const other = await createSource(client, {
      name: 'From the CLI',
      kind: 'export',
      base_url: '',
      spaces: ['ENG'],
      export_path: '/somewhere/else/eng.zip',
    })
    const moved = await replace(second, 'application/x-zip-compressed', other.id)
    t.equal(moved.status, 202, moved.text)
    t.equal(
      (await getSource(client, other.id))?.export_path,
      `${other.id}.zip`,
      'a zip kept elsewhere is now kept under EXPORTS_DIR',
    )
    // A sync whose crawl is done (its step recorded) waiting for a retry is under way too.
    const retry = await queue.getJob((moved.json as { job_id: string }).job_id)
    await retry?.updateData({ source_id: other.id, step: 'finish', gone: [], indexed: 0 })
    const stepped = await replace(third, undefined, other.id)
    t.match(stepped, { status: 409, json: { error: 'sync_running' } })
    t.same((await readdir(exports)).sort(), [`${id}.zip`, `${other.id}.zip`].sort())
  },
)

t.test(
  'with a worker: a replaced export syncs incrementally to what a fresh upload indexes',
  async (t) => {
    const pages = generatedSpace(6)
    const { rig, url } = await rigWithApi(t, pages)
    const created = await send(`${url}/api/sources/export?name=ENG`, 'POST', await zipOf(t, pages))
    t.equal(created.status, 201, created.text)
    const id = (created.json as { id: string }).id
    const jobsOf = async (source: string) =>
      (
        (await wire(`${url}/api/jobs?source_id=${source}`, { headers: auth })).json as {
          jobs: Array<{ id: string }>
        }
      ).jobs.map((j) => j.id)
    const [job] = await jobsOf(id)
    t.match(await rig.waitFor(job as string), { state: 'completed', progress: { converted: 6 } })

    // The space changed: a page deleted, one edited, one added.
    const changed = pages.filter((p) => p.id !== '1006')
    const edited = changed.find((p) => p.id === '1002') as StandInPage
    edited.storage = '<h1>Rewritten</h1><p>Entirely new words about rollbacks.</p>'
    edited.version = 2
    changed.push({ ...generatedSpace(7)[6], id: '1099', title: 'Added page' } as StandInPage)
    const next = await zipOf(t, changed)
    const replaced = await send(`${url}/api/sources/${id}/export`, 'PUT', next)
    t.equal(replaced.status, 202, replaced.text)
    const run = await rig.waitFor((replaced.json as { job_id: string }).job_id)
    t.match(run, {
      state: 'completed',
      progress: { discovered: 6, converted: 2, unchanged: 4, deleted: 1, failed: 0 },
    })
    const sources = (await wire(`${url}/api/sources`, { headers: auth })).json as {
      sources: unknown[]
    }
    t.equal(sources.sources.length, 1, 'the space is indexed once')

    // A fresh upload of the same export, as another source, indexes the same rows.
    const fresh = await send(`${url}/api/sources/export?name=Fresh`, 'POST', next)
    const freshId = (fresh.json as { id: string }).id
    const [freshJob] = await jobsOf(freshId)
    t.match(await rig.waitFor(freshJob as string), { state: 'completed' })
    const rows = await rig.rows()
    const of = (source: string) =>
      rows
        .filter((r) => r.source_id === source)
        .map(
          ({ source_id: _s, chunk_id, ...rest }): Record<string, unknown> => ({
            ...rest,
            chunk_id: String(chunk_id).slice(source.length),
          }),
        )
    const replacedRows = of(id)
    t.same(replacedRows, of(freshId), 'same chunks, texts, metadata and vectors')
    t.same([...new Set(replacedRows.map((r) => r.page_id))].sort(), changed.map((p) => p.id).sort())
    t.ok(replacedRows.some((r) => String(r.text).includes('rollbacks')))
  },
)

t.test(
  "deleting an export source purges its zip under EXPORTS_DIR, never an operator's file",
  async (t) => {
    const redis = await startRedis()
    t.teardown(() => redis.stop())
    const exports = await tempDir(t, 'cnfl-exports-')
    const { url } = await listenTestApp(t, { ...keys, REDIS_URL: redis.url, EXPORTS_DIR: exports })
    const client = new Redis(redis.url, { maxRetriesPerRequest: null })
    t.teardown(() => client.quit())
    const queue = new Queue(QueueName.sync, { connection: client, prefix: QUEUE_PREFIX })
    t.teardown(() => queue.close())
    const uploaded = await send(
      `${url}/api/sources/export?name=Uploaded`,
      'POST',
      await zipOf(t, generatedSpace(1)),
    )
    const legacy = await createSource(client, {
      name: 'Legacy',
      kind: 'export',
      base_url: '',
      spaces: ['ENG'],
      export_path: '/home/op/eng.zip',
    })
    const purgeOf = async (id: string) => {
      const res = await wire(`${url}/api/sources/${id}`, { method: 'DELETE', headers: auth })
      t.equal(res.status, 202, res.text)
      return (await queue.getJob((res.json as { job_id: string }).job_id))?.data
    }
    const id = (uploaded.json as { id: string }).id
    t.same(await purgeOf(id), { source_id: id, export_path: `${id}.zip` })
    t.same(await purgeOf(legacy.id), { source_id: legacy.id }, 'a valid purge, the file left alone')
  },
)

import { CHUNKS_TABLE, workerProcessEnv } from '@confluence-bot/shared'
import * as lancedb from '@lancedb/lancedb'
import t from 'tap'
import { request } from 'undici'
import { ADMIN_KEY, READER_KEY } from '../helpers/api.ts'
import type { StandInPage } from '../helpers/confluence-stand-in.ts'
import { generatedSpace, ingestRig } from '../helpers/ingest.ts'
import { runService, type Service } from '../helpers/process.ts'
import { S3_BUCKET, startS3StandIn } from './s3-stand-in.ts'

// The scale-out path (k8s/components/lancedb-s3) for real: the index lives in an S3-compatible
// bucket (s3rver), a worker PROCESS syncs a space into it and keeps its indices up, an api in
// ANOTHER process searches it, and a second sync (one page changed, one deleted) converges. Both
// processes reach the bucket only through LANCEDB_URI=s3://… and the standard AWS_* variables,
// as the pods of the s3 overlay do.

const URI = `s3://${S3_BUCKET}/confluence-bot/index`

/** A page whose text holds a word no other page has, so a keyword search has one right answer. */
function withWord(page: StandInPage, word: string): StandInPage {
  return { ...page, storage: `${page.storage}<p>The ${word} procedure is documented here.</p>` }
}

/** Every `msg` the service has logged so far equal to `msg`. */
const logged = (service: Service, msg: string) =>
  service
    .output()
    .split('\n')
    .filter((line) => line.includes(`"msg":"${msg}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>)

async function until<T>(what: string, check: () => T | undefined | Promise<T | undefined>) {
  const deadline = Date.now() + 60_000
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

t.test('worker and api in their own processes share an index in an S3 bucket', async (t) => {
  const s3 = await startS3StandIn(t)
  // Each process its own key, as a deployment may give the api a read-only one.
  const workerKey = s3.env()
  const apiKey = s3.env()
  const ownKey = s3.env()
  const pages = generatedSpace(140)
  pages[6] = withWord(pages[6] as StandInPage, 'quetzal')
  pages[20] = withWord(pages[20] as StandInPage, 'marzipan')
  pages[41] = withWord(pages[41] as StandInPage, 'tamarind')
  const rig = await ingestRig(t, {
    pages,
    // The vector index is built from 256 rows (the setting's floor): the space has more.
    env: { ...workerKey, LANCEDB_URI: URI, VECTOR_INDEX_MIN_ROWS: '256', SYNC_BATCH_PAGES: '20' },
  })
  // This process reads the bucket with the same settings, as LanceDB storage options.
  const storageOptions = (keyId = ownKey.AWS_ACCESS_KEY_ID) => ({
    aws_endpoint: s3.endpoint,
    aws_region: ownKey.AWS_REGION,
    allow_http: 'true',
    aws_access_key_id: keyId,
    aws_secret_access_key: ownKey.AWS_SECRET_ACCESS_KEY,
  })
  const rows = async () => {
    const db = await lancedb.connect(URI, { storageOptions: storageOptions() })
    const table = await db.openTable(CHUNKS_TABLE)
    const all = await table.query().select(['chunk_id', 'page_id', 'text']).toArray()
    table.close()
    db.close()
    return all as Array<{ chunk_id: string; page_id: string; text: string }>
  }

  const worker = runService(
    t,
    'services/worker/src/main.ts',
    workerProcessEnv({ ...rig.env, LOG_LEVEL: 'info', WORKER_CONCURRENCY: '1' }),
  )
  const api = runService(t, 'services/api/src/server.ts', {
    ...rig.env, // Redis, Ollama, LANCEDB_URI and the AWS_* variables, as the worker has them
    ...apiKey,
    PORT: '0',
    LOG_LEVEL: 'info',
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
  })
  // A failure is diagnosed from what the two processes said (LanceDB's S3 errors included).
  t.teardown(() => {
    if (t.passing()) return
    for (const [name, service] of Object.entries({ worker, api })) {
      console.error(
        `--- ${name} output (last 6000 characters) ---\n${service.output().slice(-6000)}`,
      )
    }
  })
  await worker.waitFor(/worker started/, 30_000)
  const listening = await api.waitFor(/Server listening at/, 30_000)
  const url = /listening at (http:\/\/\S+?)"/.exec(listening)?.[1] as string

  const search = async (query: string, mode = 'keyword') => {
    const res = await request(`${url}/api/search`, {
      method: 'POST',
      headers: { authorization: `Bearer ${READER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query, mode, top_k: 5 }),
    })
    const body = (await res.body.json()) as {
      mode: string
      fallback?: string
      results: Array<{ page_id: string; title: string }>
    }
    t.equal(res.statusCode, 200, res.statusCode === 200 ? `search: ${query}` : JSON.stringify(body))
    return body
  }
  const maintained = (after: number) =>
    until('the index upkeep', () => logged(worker, 'index maintained')[after])

  // Before anything is written: the bucket is reachable, the index just does not exist yet.
  const health = await request(`${url}/api/health`)
  const checks = ((await health.body.json()) as { checks: { lancedb: { status: string } } }).checks
  t.equal(checks.lancedb.status, 'ok', 'the api reaches the bucket')

  const source = await rig.register()
  const first = await rig.waitFor(await rig.enqueue(source), 60_000)
  t.equal(first.state, 'completed', first.failedReason ?? '')
  t.equal(first.progress.converted, 140)
  const upkeep = await maintained(0)
  const written = await rows()
  t.ok(written.length >= 256, `${written.length} chunks, enough for a vector index`)
  t.equal(new Set(written.map((r) => r.page_id)).size, 140, 'every page is in the bucket')
  t.equal(upkeep.rows, written.length)
  t.equal(upkeep.compacted, true, 'the many small writes of the sync were compacted')
  t.strictSame(
    upkeep.indices,
    ['source_id_idx', 'space_idx', 'text_idx', 'vector_idx'],
    'the upkeep built every index in the bucket',
  )

  const hit = await search('marzipan')
  t.equal(hit.mode, 'keyword')
  t.equal(hit.results[0]?.page_id, '1021', 'the page with the word is the first hit')
  const vector = await search('Words about topic 7 and the ENG space', 'vector')
  t.equal(vector.mode, 'vector', 'the vector index answers')
  t.notOk(vector.fallback)
  t.ok(vector.results.length > 0)

  // One page changed (its word replaced), one deleted: the second sync converges.
  const changed = rig.confluence.options.pages[6] as StandInPage
  changed.version = 2
  changed.storage = changed.storage.replace('quetzal', 'pangolin')
  const gone = rig.confluence.options.pages.splice(41, 1)[0] as StandInPage
  t.equal(gone.id, '1042')
  const second = await rig.waitFor(await rig.enqueue(source), 60_000)
  t.equal(second.state, 'completed', second.failedReason ?? '')
  t.match(second.progress, { converted: 1, deleted: 1, failed: 0 })
  await maintained(1)

  const after = await rows()
  t.equal(new Set(after.map((r) => r.page_id)).size, 139)
  t.notOk(
    after.some((r) => r.page_id === '1042'),
    'the deleted page has no chunk left',
  )
  t.ok(after.some((r) => r.page_id === '1007' && r.text.includes('pangolin')))
  t.notOk(
    after.some((r) => r.text.includes('quetzal')),
    'no chunk of the old version is left',
  )
  t.equal(new Set(after.map((r) => r.chunk_id)).size, after.length, 'no chunk twice')

  t.equal((await search('pangolin')).results[0]?.page_id, '1007', 'the new text is found')
  t.strictSame((await search('quetzal')).results, [], 'the old text is not')
  t.strictSame((await search('tamarind')).results, [], 'nor the deleted page')
  t.equal((await search('marzipan')).results[0]?.page_id, '1021', 'the rest is still found')

  // The bucket is not open to anyone: an unknown key is refused (s3rver checks the key id of a
  // SigV4 request, not its signature: see s3-stand-in.ts).
  await t.rejects(
    lancedb.connect(URI, { storageOptions: storageOptions('CNFLUNKNOWNKEY') }),
    /InvalidAccessKeyId/,
    'an unknown key is refused',
  )

  // The settings view names the bucket, never the credentials (they are not in the URI).
  const settings = await request(`${url}/admin/config`, {
    headers: { authorization: `Bearer ${ADMIN_KEY}` },
  })
  const view = await settings.body.text()
  t.equal((JSON.parse(view) as { lancedb_uri: string }).lancedb_uri, URI)
  for (const secret of [workerKey.AWS_SECRET_ACCESS_KEY, apiKey.AWS_SECRET_ACCESS_KEY]) {
    t.notMatch(view, secret, 'no secret in the settings view')
    t.notMatch(worker.output() + api.output(), secret, 'no secret logged')
  }

  // The worker wrote through the S3 API; the api only ever read (a read-only key would do).
  const writes = s3.methods(workerKey.AWS_ACCESS_KEY_ID)
  t.ok(writes.includes('PUT'), `the worker wrote the bucket (${writes.join(', ')})`)
  const reads = s3.methods(apiKey.AWS_ACCESS_KEY_ID)
  t.ok(reads.includes('GET'), 'the api read the bucket')
  t.strictSame(
    reads.filter((m) => m !== 'GET' && m !== 'HEAD'),
    [],
    `the api only reads (${reads.join(', ')})`,
  )
  worker.child.kill('SIGTERM')
  api.child.kill('SIGTERM')
  t.equal((await worker.exit).code, 0)
  t.equal((await api.exit).code, 0)
})

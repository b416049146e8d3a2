import { generateSecretsKey, QUEUE_PREFIX, QueueName, sealedEnvelope } from '@confluence-bot/shared'
import t from 'tap'
import { ADMIN_KEY, bearer, listenTestApp } from '../helpers/api.ts'
import { generatedSpace, ingestRig, rigApiEnv } from '../helpers/ingest.ts'
import { wire } from '../helpers/wire.ts'

// SECRETS_KEY as an operator meets it: an api without one refuses credentials (400 naming the
// setting) and still registers sources without; a worker whose key does not open a source's
// credentials fails that sync at once with a message naming key ids, never a value, and stays
// up; a record left in clear by an earlier version syncs and is sealed.

const SECRETS = `${QUEUE_PREFIX}:source-secrets`
const USER = 'bot@acme.test'
const TOKEN = 'right-token-7f3a9c'

t.test('an api without SECRETS_KEY refuses credentials with 400 naming it', async (t) => {
  const rig = await ingestRig(t, { pages: generatedSpace(1) })
  const { url } = await listenTestApp(t, {
    ...rigApiEnv(rig),
    SECRETS_KEY: '',
    ADMIN_API_KEYS: ADMIN_KEY,
  })
  const post = (body: object) =>
    wire(`${url}/api/sources`, {
      method: 'POST',
      headers: { ...bearer(ADMIN_KEY), 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
  const source = {
    name: 'With credentials',
    kind: 'cloud',
    base_url: rig.confluence.baseUrl,
    spaces: ['ENG'],
    auth: { type: 'basic', username: USER, token: TOKEN },
  }
  const refused = await post(source)
  t.equal(refused.status, 400)
  t.match(refused.json, { error: 'source_refused', message: /SECRETS_KEY, which is not set/ })
  t.notMatch(refused.text, TOKEN)
  t.equal(await rig.client.hlen(SECRETS), 0, 'nothing stored')
  const { auth: _auth, ...without } = source
  const created = await post(without)
  t.equal(created.status, 201, 'a source without credentials needs no key')
  t.equal((created.json as { has_credentials: boolean }).has_credentials, false)
})

t.test(
  'a wrong key fails the sync at once with a clear message; the worker stays up',
  async (t) => {
    const rig = await ingestRig(t, {
      pages: generatedSpace(2),
      confluence: { auth: { type: 'basic', username: USER, token: TOKEN } },
    })
    const source = await rig.register({ auth: { type: 'basic', username: USER, token: TOKEN } })
    const { worker } = await rig.startWorker({ SECRETS_KEY: generateSecretsKey() })
    const jobId = await rig.enqueue(source)
    const run = await rig.waitFor(jobId)
    t.equal(run.state, 'failed')
    t.match(
      run.failedReason,
      new RegExp(
        `^The credentials of source ${source} were encrypted with key id [0-9a-f]{16}, which is neither SECRETS_KEY \\(key id [0-9a-f]{16}\\) nor in SECRETS_KEY_PREVIOUS`,
      ),
    )
    const stored = (await rig.client.hget(SECRETS, source)) as string
    for (const secret of [TOKEN, USER, stored, rig.env.SECRETS_KEY as string]) {
      t.notMatch(run.failedReason, secret)
    }
    const job = await rig.client.hgetall(`${QUEUE_PREFIX}:${QueueName.sync}:${jobId}`)
    t.equal(job.atm, '1', 'not retried: another attempt cannot open them either')
    t.strictSame(JSON.parse(job.data as string), { source_id: source }, 'job data: the source id')
    const health = await fetch(`http://127.0.0.1:${worker.healthPort}/health/ready`)
    t.equal(health.status, 200, 'the worker is still up')
    // What an operator sees of the source: its jobs, the failed one with the same reason.
    const { url } = await listenTestApp(t, { ...rigApiEnv(rig), ADMIN_API_KEYS: ADMIN_KEY })
    const jobs = await wire(`${url}/api/jobs?source_id=${source}`, { headers: bearer(ADMIN_KEY) })
    t.equal(jobs.status, 200)
    const listed = (jobs.json as { jobs: Array<Record<string, unknown>> }).jobs
    t.match(listed, [
      { id: jobId, source_id: source, state: 'failed', failed_reason: run.failedReason },
    ])
    t.notMatch(jobs.text, TOKEN)
  },
)

t.test('credentials in clear from an earlier version sync, and are sealed', async (t) => {
  const rig = await ingestRig(t, {
    pages: generatedSpace(2),
    confluence: { auth: { type: 'bearer', token: TOKEN } },
  })
  const source = await rig.register()
  await rig.client.hset(SECRETS, source, JSON.stringify({ type: 'bearer', token: TOKEN }))
  await rig.startWorker()
  const run = await rig.waitFor(await rig.enqueue(source))
  t.equal(run.state, 'completed', String(run.failedReason))
  const stored = (await rig.client.hget(SECRETS, source)) as string
  t.ok(sealedEnvelope(stored), 'sealed under SECRETS_KEY')
  t.notMatch(stored, TOKEN)
})

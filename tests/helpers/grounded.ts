import type { FastifyInstance } from 'fastify'
import { ADMIN_KEY, listenTestApp, READER_KEY } from './api.ts'
import type { StandInPage } from './confluence-stand-in.ts'
import { ingestRig, type Rig, rigApiEnv } from './ingest.ts'

// A small indexed space for the search and grounded-answer tests, synced by a real worker into
// a real LanceDB (full-text index built), and an api listening on it with three keys: an admin,
// a reader of every space, and a reader limited to ENG.

type T = { teardown(fn: () => unknown): void }

/** Parsed JSON in a test: read field by field, checked by the assertions. */
// biome-ignore lint/suspicious/noExplicitAny: a test reads whatever the wire carried
export type Json = Record<string, any>

/** A reader key limited to the ENG space (API_KEYS syntax KEY:SPACE). */
export const ENG_KEY = 'eng-only-key-0123456789abcdef'

const page = (
  id: string,
  spaceKey: string,
  title: string,
  storage: string,
  extra: Partial<StandInPage> = {},
): StandInPage => ({
  id,
  title,
  spaceKey,
  version: 1,
  storage,
  updatedAt: '2024-05-01T10:00:00.000Z',
  ...extra,
})

export const GROUNDED_PAGES: StandInPage[] = [
  page(
    '101',
    'ENG',
    'Deploying the billing service',
    '<h1>Deploy to production</h1><p>The billing service is deployed with Helm: run <code>helm upgrade billing ./chart</code> from the release branch after the pipeline is green.</p><h2>Rollback</h2><p>To roll back a billing deployment run <code>helm rollback billing</code> with the previous revision number.</p>',
    { labels: ['runbook'], updatedAt: '2024-06-10T08:00:00.000Z' },
  ),
  page(
    '102',
    'ENG',
    'Rotating database passwords',
    '<h1>Password rotation</h1><p>Database passwords are rotated every 90 days in Vault. Rotate the Postgres password with <code>vault write database/rotate-root/billing</code>.</p>',
    { labels: ['security'], updatedAt: '2023-01-15T08:00:00.000Z' },
  ),
  page(
    '103',
    'ENG',
    'Data Center installation',
    '<h1>Installing on Data Center</h1><p>On Confluence Data Center, register the source with kind datacenter and a personal access token; the base URL ends with /confluence.</p>',
  ),
  page(
    '201',
    'OPS',
    'On-call rotation',
    '<h1>Paging</h1><p>The on-call engineer is paged through Opsgenie. The rotation changes every Monday at 10:00; swap shifts in the Opsgenie schedule.</p>',
    { labels: ['runbook'] },
  ),
  page(
    '202',
    'OPS',
    'Incident severity levels',
    '<h1>Severities</h1><p>SEV1 means customers cannot pay; page the incident commander at once. SEV2 is degraded billing; SEV3 is cosmetic.</p>',
  ),
]

export type GroundedRig = {
  rig: Rig
  app: FastifyInstance
  url: string
  sourceId: string
}

/** The pages synced and indexed, an api listening on them (grounding on). */
export async function groundedRig(
  t: T,
  options: { pages?: StandInPage[]; env?: Record<string, string> } = {},
): Promise<GroundedRig> {
  const rig = await ingestRig(t, {
    pages: options.pages ?? GROUNDED_PAGES,
    ollama: { embedDimension: 256 },
  })
  const { ingest } = await rig.startWorker()
  const sourceId = await rig.register()
  const run = await rig.waitFor(await rig.enqueue(sourceId))
  if (run.state !== 'completed') throw new Error(`the sync ${run.state}: ${run.failedReason}`)
  await ingest.ingest.store.maintain()
  const { app, url } = await listenTestApp(t, {
    API_KEYS: `${READER_KEY},${ENG_KEY}:ENG`,
    ADMIN_API_KEYS: ADMIN_KEY,
    ...rigApiEnv(rig),
    OLLAMA_URL: rig.ollama.url,
    RAG_ENABLED: 'true',
    ...options.env,
  })
  return { rig, app, url, sourceId }
}

/** POSTs JSON over the wire with a key; the status and the parsed body (or text). */
export async function post(
  url: string,
  key: string,
  body: unknown,
): Promise<{ status: number; json: Json; text: string }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  const text = await res.text()
  let json: Json = {}
  try {
    json = JSON.parse(text)
  } catch {
    // not JSON: the test reads `text`
  }
  return { status: res.status, json, text }
}

/** The NDJSON lines of a body. */
export const ndjsonLines = (text: string) =>
  text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Json)

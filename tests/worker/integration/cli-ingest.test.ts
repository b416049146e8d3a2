import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { buildExportZip } from '../../helpers/confluence-export.ts'
import { generatedSpace, ingestRig, type Rig } from '../../helpers/ingest.ts'
import { runScript } from '../../helpers/process.ts'

// `cnfl ingest`: a sync in the foreground, progress on stderr, a JSON summary on stdout.

const CNFL = 'scripts/cnfl.ts'

/** `cnfl ingest` of the rig's Cloud space ENG as a source named Eng, with any further flags. */
function ingestEng(rig: Rig, ...extra: string[]) {
  return runScript(
    CNFL,
    [
      'ingest',
      '--kind',
      'cloud',
      '--base-url',
      rig.confluence.baseUrl,
      '--space',
      'ENG',
      '--name',
      'Eng',
      ...extra,
    ],
    { env: rig.env },
  )
}

t.test(
  'cnfl ingest registers a source, syncs it with a progress bar, and syncs it again',
  async (t) => {
    const pages = generatedSpace(6)
    const rig = await ingestRig(t, { pages })
    const first = await ingestEng(rig)
    t.equal(first.code, 0, first.stderr)
    const summary = JSON.parse(first.stdout)
    t.match(summary, {
      source_id: /^src_/,
      state: 'completed',
      progress: { discovered: 6, converted: 6, embedded: 6, failed: 0 },
      errors: 0,
    })
    t.match(first.stderr, /syncing Eng \(src_/)
    t.match(first.stderr, /\[#{30}\] 6\/6 pages · 6 converted/)
    t.equal(new Set((await rig.rows()).map((r) => r.page_id)).size, 6)

    pages.splice(0, 1)
    const again = await runScript(CNFL, ['ingest', summary.source_id], { env: rig.env })
    t.equal(again.code, 0, again.stderr)
    t.match(JSON.parse(again.stdout).progress, { unchanged: 5, deleted: 1, converted: 0 })

    const byName = await ingestEng(rig, '--full')
    t.equal(
      JSON.parse(byName.stdout).source_id,
      summary.source_id,
      'a source of that name is reused',
    )
    t.equal(JSON.parse(byName.stdout).progress.converted, 5, '--full converts every page again')

    pages.splice(0, 4)
    const guarded = await runScript(CNFL, ['ingest', summary.source_id], { env: rig.env })
    t.equal(guarded.code, 0, 'the guard reports; it does not fail the sync')
    t.match(guarded.stderr, /^error: {2}Refused to delete 4 of 5 indexed pages/m)
    t.match(JSON.parse(guarded.stdout), { progress: { deleted: 0 }, errors: 1 })
  },
)

t.test('cnfl ingest prints the pages it could not read', async (t) => {
  const rig = await ingestRig(t, {
    pages: generatedSpace(3),
    confluence: {
      faults: [
        { path: /\/api\/v2\/pages\?/, status: 400, times: 1 },
        { path: /\/api\/v2\/pages\/1002\b/, status: 404, times: 10 },
      ],
    },
  })
  const source = await rig.register()
  const run = await runScript(CNFL, ['ingest', source], { env: rig.env })
  t.equal(run.code, 0, run.stderr)
  t.match(run.stderr, /^error: 1002 .*not found or no permission/m)
  t.match(JSON.parse(run.stdout), { progress: { converted: 2, failed: 1 }, errors: 1 })
})

t.test('cnfl ingest --export FILE.zip ingests an export; a failing sync exits 1', async (t) => {
  const pages = generatedSpace(3)
  const rig = await ingestRig(t, {
    pages,
    confluence: { auth: { type: 'bearer', token: 'the-right-pat' } },
  })
  await mkdir(rig.config.EXPORTS_DIR, { recursive: true })
  const zip = await buildExportZip(pages, {
    spaceKey: 'ENG',
    spaceName: 'Engineering',
    path: join(rig.config.EXPORTS_DIR, 'eng.zip'),
  })
  const run = await runScript(CNFL, ['ingest', '--export', zip.path], { env: rig.env })
  t.equal(run.code, 0, run.stderr)
  t.match(JSON.parse(run.stdout), { state: 'completed', progress: { converted: 3 } })

  const refused = await runScript(
    CNFL,
    ['ingest', '--kind', 'datacenter', '--base-url', rig.confluence.baseUrl, '--space', 'ENG'],
    { env: { ...rig.env, CONFLUENCE_TOKEN: 'a-wrong-pat-value' } },
  )
  t.equal(refused.code, 1)
  t.match(refused.stderr, /sync failed: .*401/)
  t.notMatch(refused.stderr + refused.stdout, /a-wrong-pat-value/, 'the token is never printed')
  t.match(JSON.parse(refused.stdout), { state: 'failed' })
})

t.test('cnfl ingest follows the sync of its source that is already waiting', async (t) => {
  const rig = await ingestRig(t, { pages: generatedSpace(2) })
  const source = await rig.register()
  const waiting = await rig.enqueue(source)
  const run = await runScript(CNFL, ['ingest', source], { env: rig.env })
  t.equal(run.code, 0, run.stderr)
  t.match(run.stderr, `a sync of this source is already running: ${waiting}`)
  t.match(JSON.parse(run.stdout), {
    job_id: waiting,
    state: 'completed',
    progress: { discovered: 2, converted: 2 },
  })
})

t.test('cnfl ingest usage errors exit 2', async (t) => {
  const rig = await ingestRig(t, { pages: generatedSpace(1) })
  const cases: Array<[string[], RegExp]> = [
    [['ingest'], /Usage: cnfl ingest/],
    [['ingest', 'src_000000000000'], /no source src_000000000000/],
    [['ingest', '--kind', 'wiki', '--base-url', 'http://x'], /--kind must be cloud or datacenter/],
    [['ingest', '--kind', 'cloud'], /--kind needs --base-url and at least one --space/],
  ]
  for (const [args, message] of cases) {
    const run = await runScript(CNFL, args, { env: rig.env })
    t.equal(run.code, 2, args.join(' '))
    t.match(run.stderr, message)
  }
  const noRedis = await runScript(CNFL, ['ingest', 'src_000000000000'], {
    env: { ...rig.env, REDIS_URL: 'redis://127.0.0.1:1' },
  })
  t.equal(noRedis.code, 1)
  t.match(noRedis.stderr, /Redis at REDIS_URL=redis:\/\/127\.0\.0\.1:1 is unreachable/)
  const help = await runScript(CNFL, ['ingest', '--help'], { env: rig.env })
  t.equal(help.code, 0)
  t.match(help.stdout, /--export FILE.zip/)
})

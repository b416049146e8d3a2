import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  createSource,
  getSource,
  JobName,
  listSources,
  QUEUE_PREFIX,
  QueueName,
  syncJobOptions,
} from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import t from 'tap'
import { tempDir } from '../../helpers/api.ts'
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

t.test(
  'cnfl ingest --export replaces the zip of the source of that space; anything else is refused',
  async (t) => {
    const pages = generatedSpace(6)
    const rig = await ingestRig(t, { pages })
    const dir = await tempDir(t, 'cnfl-zips-')
    const zip = async (file: string, space = pages, spaceKey = 'ENG') =>
      (await buildExportZip(space, { spaceKey, spaceName: spaceKey, path: join(dir, file) })).path
    const cnfl = (...args: string[]) => runScript(CNFL, ['ingest', ...args], { env: rig.env })
    const exportsDir = rig.config.EXPORTS_DIR

    const first = await cnfl('--export', await zip('eng-v1.zip'))
    t.equal(first.code, 0, first.stderr)
    const { source_id: id } = JSON.parse(first.stdout)
    t.match(JSON.parse(first.stdout), { progress: { converted: 6 } })

    // The space changed: a page deleted, one edited.
    pages.splice(5, 1)
    ;(pages[1] as (typeof pages)[number]).storage = '<p>Rewritten: how to roll back.</p>'
    const v2 = await zip('eng-v2.zip')
    const second = await cnfl('--export', v2)
    t.equal(second.code, 0, second.stderr)
    t.match(second.stderr, `replaced the export of ${id} "eng-v1.zip" with ${v2}`)
    t.match(JSON.parse(second.stdout), {
      source_id: id,
      progress: { discovered: 5, converted: 1, unchanged: 4, deleted: 1, failed: 0 },
    })
    t.equal((await listSources(rig.client)).length, 1, 'the space is indexed once')
    t.equal(new Set((await rig.rows()).map((r) => r.page_id)).size, 5)
    t.same(await readdir(exportsDir), [`${id}.zip`], 'the zip is kept under EXPORTS_DIR')

    const refusals: Array<[string[], RegExp]> = [
      [['--export', v2, '--name', 'Other'], /already holds this; a second would index it twice/],
      [
        ['--export', v2, '--base-url', 'https://wiki.test', '--name', 'eng-v1.zip'],
        /is not this one: its base URL is \(none\)/,
      ],
      [
        ['--export', await zip('ops.zip', generatedSpace(2, 'OPS'), 'OPS'), '--name', 'eng-v1.zip'],
        /is not this one: it holds the space\(s\) ENG/,
      ],
    ]
    for (const [args, message] of refusals) {
      const run = await cnfl(...args)
      t.equal(run.code, 2, args.join(' '))
      t.match(run.stderr, message)
    }

    // A sync under way (its crawl recorded) listed the old zip: no replacement until it is done.
    const queue = new Queue(QueueName.sync, { connection: rig.client, prefix: QUEUE_PREFIX })
    t.teardown(() => queue.close())
    const busy = await queue.add(
      JobName.sync,
      { source_id: id, step: 'finish', gone: [], indexed: 5 },
      syncJobOptions(id),
    )
    const refused = await cnfl('--export', v2)
    t.equal(refused.code, 1)
    t.match(refused.stderr, `is under way (job ${busy.id})`)
    await busy.remove()

    // An uploaded export that has not synced yet (no space known), its zip kept elsewhere.
    const uploaded = await createSource(rig.client, {
      name: 'Uploaded',
      kind: 'export',
      base_url: '',
      spaces: [],
      export_path: '/elsewhere/old.zip',
    })
    const named = await cnfl('--export', join(dir, 'ops.zip'), '--name', 'Uploaded')
    t.equal(named.code, 0, named.stderr)
    t.match(JSON.parse(named.stdout), { source_id: uploaded.id, progress: { converted: 2 } })
    t.match(await getSource(rig.client, uploaded.id), {
      spaces: ['OPS'],
      export_path: `${uploaded.id}.zip`,
    })

    const site = await cnfl('--export', join(dir, 'ops.zip'), '--base-url', 'https://wiki.test/')
    t.equal(site.code, 0, site.stderr)
    const other = await getSource(rig.client, JSON.parse(site.stdout).source_id)
    t.match(other, { name: 'ops.zip', base_url: 'https://wiki.test', spaces: ['OPS'] })
    t.not(other?.id, uploaded.id, 'an export of another site is another source')

    await createSource(rig.client, {
      name: 'Twin',
      kind: 'export',
      base_url: '',
      spaces: ['ENG'],
      export_path: 'x.zip',
    })
    const twice = await cnfl('--export', v2)
    t.equal(twice.code, 2)
    t.match(twice.stderr, /several sources match: .*"eng-v1.zip".*"Twin"/)

    await writeFile(join(dir, 'garbage.zip'), 'not a zip at all')
    const garbage = await cnfl('--export', join(dir, 'garbage.zip'))
    t.equal(garbage.code, 1)
    t.match(garbage.stderr, `${join(dir, 'garbage.zip')} is not a Confluence HTML space export`)
    t.notOk(
      (await readdir(exportsDir)).some((f) => f.endsWith('.part')),
      'no partial zip is left behind',
    )
  },
)

t.test(
  'cnfl ingest --kind matches a source by kind, base URL and spaces, never by name alone',
  async (t) => {
    const rig = await ingestRig(t, { pages: generatedSpace(2) })
    const url = rig.confluence.baseUrl
    const cnfl = (...args: string[]) => runScript(CNFL, ['ingest', ...args], { env: rig.env })
    const first = await cnfl('--kind', 'cloud', '--base-url', url, '--space', 'ENG')
    t.equal(first.code, 0, first.stderr)
    const { source_id: id } = JSON.parse(first.stdout)
    await createSource(rig.client, {
      name: 'Narrow',
      kind: 'cloud',
      base_url: url,
      spaces: ['ENG'],
      cql: 'label = "runbook"',
    })
    const refusals: Array<[string[], RegExp]> = [
      [
        ['--kind', 'datacenter', '--base-url', url, '--space', 'ZZ'],
        /is not this one: it is a cloud source\. Pass another --name/,
      ],
      [
        ['--kind', 'cloud', '--base-url', `${url}/`, '--space', 'ENG', '--name', 'Second'],
        new RegExp(`source ${id} .* already holds this`),
      ],
      [
        [
          '--kind',
          'cloud',
          '--base-url',
          'http://127.0.0.1:1/wiki',
          '--space',
          'ENG',
          '--name',
          url,
        ],
        /its base URL is http/,
      ],
      [
        ['--kind', 'cloud', '--base-url', url, '--space', 'ENG', '--name', 'Narrow'],
        /its scope is narrowed/,
      ],
    ]
    for (const [args, message] of refusals) {
      const run = await cnfl(...args)
      t.equal(run.code, 2, args.join(' '))
      t.match(run.stderr, message)
    }
    t.equal((await listSources(rig.client)).length, 2, 'nothing was registered')
    const again = await cnfl('--kind', 'cloud', '--base-url', `${url}/`, '--space', 'ENG')
    t.equal(again.code, 0, again.stderr)
    t.equal(JSON.parse(again.stdout).source_id, id, 'the matching source is synced')
  },
)

import {
  exportFileName,
  isJobName,
  JobName,
  jobDataProblem,
  scheduledSyncTemplate,
} from '@confluence-bot/shared'
import t from 'tap'

// The payload schemas of the queue contract: what each job's data may hold, and the words a
// failed job gets (each naming its field).

const SOURCE = 'src_0123456789ab'
const page = {
  id: '1001',
  spaceKey: 'ENG',
  title: 'Home',
  version: '3',
  labels: ['a'],
  url: 'https://x.atlassian.net/wiki/spaces/ENG/pages/1001',
  ancestors: [],
}

t.test('the job names of the contract', async (t) => {
  for (const name of Object.values(JobName)) t.ok(isJobName(name), name)
  for (const name of ['echo', 'constructor', 'toString', '']) t.notOk(isJobName(name), name)
})

t.test('sync: what producers send and what the sync keeps between its steps', async (t) => {
  for (const data of [
    scheduledSyncTemplate(SOURCE).data,
    { source_id: SOURCE, full: true, force: false },
    { source_id: SOURCE, step: 'finish', gone: ['1'], indexed: 4, embed: null },
    { source_id: SOURCE, step: 'finish', gone: [], indexed: 0, embed: { model: 'm', dim: 8 } },
  ]) {
    t.equal(jobDataProblem(JobName.sync, data), undefined, JSON.stringify(data))
  }
  const cases: Array<[unknown, string]> = [
    [{}, 'source_id is required'],
    [{ source_id: '../x' }, 'source_id must match pattern "^src_[0-9a-f]{12}$"'],
    [{ source_id: `${SOURCE}0` }, 'source_id must match pattern'],
    [{ source_id: SOURCE, full: 'yes' }, 'full must be boolean'],
    [{ source_id: SOURCE, step: 'crawl' }, 'step must be equal to constant'],
    [{ source_id: SOURCE, indexed: -1 }, 'indexed must be >= 0'],
    [{ source_id: SOURCE, gone: [1] }, 'gone.0 must be string'],
    [{ source_id: SOURCE, embed: { model: 'm' } }, 'embed.dim is required'],
    [{ source_id: SOURCE, x: 1, y: 2 }, 'x, y are not allowed'],
    ['src', 'the data must be object'],
    [null, 'the data must be object'],
  ]
  for (const [data, problem] of cases) {
    t.match(jobDataProblem(JobName.sync, data), problem, JSON.stringify(data))
  }
  t.equal(
    jobDataProblem(JobName.sync, { source_id: SOURCE, x: 1 }),
    'x is not allowed',
    'an extra property is reported once',
  )
})

t.test('pages: a batch as the sync fans it out', async (t) => {
  const batch = {
    source_id: SOURCE,
    run_id: `sync-${SOURCE}-1718000000000`,
    batch: 0,
    embed: { model: 'nomic-embed-text', dim: 768 },
    space_names: { ENG: 'Engineering' },
    pages: [
      page,
      {
        ...page,
        id: '1002',
        parentId: '1001',
        updatedAt: '2024-05-01T10:00:00.000Z',
        author: { id: 'u1', name: 'Ann' },
        ancestors: ['Home'],
      },
    ],
  }
  t.equal(jobDataProblem(JobName.pages, batch), undefined)
  const { id: _, ...withoutId } = page
  t.equal(jobDataProblem(JobName.pages, { ...batch, embed: null, run_id: '42' }), undefined)
  const cases: Array<[unknown, string]> = [
    [{ source_id: SOURCE }, 'run_id, batch, embed, space_names, pages are required'],
    [{ ...batch, run_id: 'cnfl:run:x' }, 'run_id must match pattern'],
    [{ ...batch, batch: 1.5 }, 'batch must be integer'],
    [{ ...batch, space_names: { ENG: 1 } }, 'space_names.ENG must be string'],
    [{ ...batch, pages: [{ ...page, id: 7 }] }, 'pages.0.id must be string'],
    [{ ...batch, pages: [withoutId] }, 'pages.0.id is required'],
    [{ ...batch, pages: [page, { ...page, body: '<p/>' }] }, 'pages.1.body is not allowed'],
    [{ ...batch, pages: [{ ...page, author: { id: 'u' } }] }, 'pages.0.author.name is required'],
  ]
  for (const [data, problem] of cases) {
    t.match(jobDataProblem(JobName.pages, data), problem, problem)
  }
})

t.test('purge: a source id and, for an export, its own zip in EXPORTS_DIR', async (t) => {
  t.equal(exportFileName(SOURCE), `${SOURCE}.zip`)
  t.equal(jobDataProblem(JobName.purge, { source_id: SOURCE }), undefined)
  t.equal(
    jobDataProblem(JobName.purge, { source_id: SOURCE, export_path: `${SOURCE}.zip` }),
    undefined,
  )
  const cases: Array<[unknown, string]> = [
    [{ source_id: SOURCE, export_path: '../victim.txt' }, 'export_path must match pattern'],
    [{ source_id: SOURCE, export_path: `../${SOURCE}.zip` }, 'export_path must match pattern'],
    [{ source_id: SOURCE, export_path: `sub/${SOURCE}.zip` }, 'export_path must match pattern'],
    [{ source_id: SOURCE, export_path: '/etc/passwd' }, 'export_path must match pattern'],
    [{ source_id: SOURCE, export_path: `${SOURCE}.zip\n` }, 'export_path must match pattern'],
    [{ source_id: SOURCE, export_path: '' }, 'export_path must match pattern'],
    [
      { source_id: SOURCE, export_path: 'src_000000000000.zip' },
      `export_path must be "${SOURCE}.zip" (the export of source ${SOURCE})`,
    ],
    [{ export_path: `${SOURCE}.zip` }, 'source_id is required'],
  ]
  for (const [data, problem] of cases) {
    t.match(jobDataProblem(JobName.purge, data), problem, JSON.stringify(data))
  }
})

t.test('maintain: no data at all', async (t) => {
  t.equal(jobDataProblem(JobName.maintain, {}), undefined)
  t.equal(jobDataProblem(JobName.maintain, { source_id: SOURCE }), 'source_id is not allowed')
  t.equal(jobDataProblem(JobName.maintain, []), 'the data must be object')
})

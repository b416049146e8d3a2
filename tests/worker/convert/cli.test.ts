import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { type ConvertOptions, convertStorage } from '../../../services/worker/src/convert/index.ts'
import { tempDir } from '../../helpers/api.ts'
import { type Run, runScript } from '../../helpers/process.ts'

// `cnfl convert` as an operator runs it: a child process on this Node with the source condition,
// as `pnpm cnfl` starts it. Its stdout must be exactly what the worker would index.

const ENTRY = 'scripts/cnfl.ts'
const FIXTURE = fileURLToPath(
  new URL(
    '../../../../shared/fixtures/confluence/querypie__querypie-docs/confluence-mdx/tests/testcases/544112828/',
    import.meta.url,
  ),
)

// A small page with what the converter rewrites: a heading, a page link, a user, a code macro
// with CDATA, a table, a panel, an attachment image, a Jira issue, a self-closing toc.
const SAMPLE = `<ac:structured-macro ac:name="toc" /><h1>Release notes</h1>
<p>See <ac:link><ri:page ri:content-title="Install Guide" /></ac:link>, ask <ac:link><ri:user ri:account-id="abc" /></ac:link>
about <ac:structured-macro ac:name="jira"><ac:parameter ac:name="key">OPS-12</ac:parameter></ac:structured-macro>.</p>
<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">bash</ac:parameter><ac:plain-text-body><![CDATA[if [ "$a" < 3 ] && true; then echo '<p>'; fi]]></ac:plain-text-body></ac:structured-macro>
<table><colgroup><col /></colgroup><tbody><tr><th><p>Key</p></th><th><p>Value</p></th></tr><tr><td><p>a</p></td><td><p>1</p></td></tr></tbody></table>
<ac:structured-macro ac:name="info"><ac:rich-text-body><p>Back up first.</p></ac:rich-text-body></ac:structured-macro>
<p><ac:image><ri:attachment ri:filename="diagram.png" /></ac:image></p>`

const cnfl = (args: string[], input?: string, env: Record<string, string> = {}) =>
  runScript(ENTRY, args, { input, env })

const markdown = (storage: string, options: ConvertOptions = {}) =>
  convertStorage(storage, options).markdown

t.test(
  'convert prints exactly the markdown the converter gives, from a file and stdin',
  async (t) => {
    const dir = await tempDir(t)
    const file = join(dir, 'page.xhtml')
    writeFileSync(file, SAMPLE)
    const expected = markdown(SAMPLE)
    t.match(expected, /```bash/, 'the sample exercises the converter')

    const fromFile = await cnfl(['convert', file])
    t.equal(fromFile.code, 0)
    t.equal(fromFile.stdout, expected)
    t.equal(fromFile.stderr, '')

    const fromStdin = await cnfl(['convert', '-'], SAMPLE)
    t.equal(fromStdin.code, 0)
    t.equal(fromStdin.stdout, expected)
  },
)

t.test('the link options reach the converter', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'page.xhtml')
  writeFileSync(file, SAMPLE)
  const options = {
    baseUrl: 'https://acme.atlassian.net/wiki',
    spaceKey: 'OPS',
    pageId: '4242',
    jiraBaseUrl: 'https://acme.atlassian.net',
  }
  const run = await cnfl([
    'convert',
    '--base-url',
    options.baseUrl,
    '--space',
    options.spaceKey,
    '--page-id',
    options.pageId,
    '--jira-url',
    options.jiraBaseUrl,
    file,
  ])
  t.equal(run.code, 0)
  t.equal(run.stdout, markdown(SAMPLE, options))
  t.match(run.stdout, 'https://acme.atlassian.net/wiki/display/OPS/Install+Guide')
  t.match(run.stdout, 'https://acme.atlassian.net/wiki/download/attachments/4242/diagram.png')
  t.match(run.stdout, 'https://acme.atlassian.net/browse/OPS-12')
})

t.test('a REST response gives its storage body, and the page it describes', async (t) => {
  const dir = await tempDir(t)
  const v1 = join(dir, 'page.v1.json')
  writeFileSync(
    v1,
    JSON.stringify({
      id: '4242',
      space: { key: 'OPS' },
      body: { storage: { value: SAMPLE, representation: 'storage' } },
      _links: { base: 'https://acme.atlassian.net/wiki', webui: '/spaces/OPS/pages/4242/Notes' },
    }),
  )
  const options = { baseUrl: 'https://acme.atlassian.net/wiki', spaceKey: 'OPS', pageId: '4242' }
  const run = await cnfl(['convert', v1])
  t.equal(run.code, 0)
  t.equal(run.stdout, markdown(SAMPLE, options))
  const overridden = await cnfl(['convert', '--space', 'DOC', v1])
  t.equal(overridden.stdout, markdown(SAMPLE, { ...options, spaceKey: 'DOC' }), 'options win')

  // v2 (`body-format=storage`): no space key, but the web UI link names the space.
  const v2 = {
    id: '7',
    spaceId: '99',
    body: { storage: { representation: 'storage', value: SAMPLE } },
    _links: { webui: '/spaces/KB/pages/7/X' },
  }
  const fromStdin = await cnfl(['convert', '-'], JSON.stringify(v2))
  t.equal(fromStdin.code, 0)
  t.equal(fromStdin.stdout, markdown(SAMPLE, { pageId: '7', spaceKey: 'KB' }))

  // A bare storage string, a numeric id, no links; and a relative path under `pnpm cnfl`,
  // which runs in the repository: the path is the caller's (INIT_CWD).
  writeFileSync(join(dir, 'bare.json'), JSON.stringify({ id: 8, body: { storage: SAMPLE } }))
  const bare = await cnfl(['convert', 'bare.json'], undefined, {
    npm_lifecycle_event: 'cnfl',
    INIT_CWD: dir,
  })
  t.equal(bare.code, 0)
  t.equal(bare.stdout, markdown(SAMPLE, { pageId: '8' }))
})

t.test(
  'a real page and its REST responses',
  { skip: !existsSync(FIXTURE) && 'shared fixtures absent' },
  async (t) => {
    const storage = readFileSync(join(FIXTURE, 'page.xhtml'), 'utf8')
    const run = await cnfl(['convert', join(FIXTURE, 'page.xhtml')])
    t.equal(run.code, 0)
    t.equal(run.stdout, markdown(storage))

    const v1 = await cnfl(['convert', join(FIXTURE, 'page.v1.json')])
    t.equal(v1.code, 0)
    t.equal(
      v1.stdout,
      markdown(storage, {
        pageId: '544112828',
        spaceKey: 'QM',
        baseUrl: 'https://querypie.atlassian.net/wiki',
      }),
    )

    // This v2 response was fetched as ADF: it holds no storage body, and the error says how to ask.
    const v2 = await cnfl(['convert', join(FIXTURE, 'page.v2.json')])
    t.equal(v2.code, 1)
    t.equal(v2.stdout, '')
    t.match(v2.stderr, /^cnfl: .*no body\.storage.*atlas_doc_format.*body-format=storage\)\n$/)
  },
)

t.test('warnings go to stderr, the markdown still to stdout', async (t) => {
  // Nesting deeper than the converter follows is flattened, with a warning.
  const deep = `${'<div>'.repeat(80)}<p>deep text</p>${'</div>'.repeat(80)}`
  const { markdown: expected, warnings } = convertStorage(deep)
  const run = await cnfl(['convert', '-'], deep)
  t.equal(run.code, 0)
  t.equal(run.stdout, expected)
  t.equal(run.stderr, warnings.map((w) => `warning: ${w}\n`).join(''))
  t.ok(warnings.length > 0, 'the input does produce a warning')
})

t.test(
  'anchor links follow --kind; a Data Center page title comes from --title or the response',
  async (t) => {
    const dir = await tempDir(t)
    const page = '<p><ac:link ac:anchor="Roll back"><ac:link-body>undo</ac:link-body></ac:link></p>'
    const file = join(dir, 'page.xhtml')
    writeFileSync(file, page)
    const dc = await cnfl(['convert', '--kind', 'datacenter', '--title', 'Deploy Guide', file])
    t.equal(dc.stdout, '[undo](#DeployGuide-Rollback)\n')
    const cloud = await cnfl(['convert', '--kind', 'cloud', file])
    t.equal(cloud.stdout, '[undo](#Roll-back)\n')
    const json = join(dir, 'page.json')
    writeFileSync(json, JSON.stringify({ id: '9', title: 'Deploy Guide', body: { storage: page } }))
    const fromResponse = await cnfl(['convert', '--kind', 'datacenter', json])
    t.equal(fromResponse.stdout, '[undo](#DeployGuide-Rollback)\n')
    const wrong = await cnfl(['convert', '--kind', 'server', file])
    t.equal(wrong.code, 1)
    t.match(wrong.stderr, /--kind must be cloud or datacenter, not server/)
  },
)

t.test('errors: one line on stderr, exit 1; usage: exit 2', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'page.xhtml')
  writeFileSync(file, SAMPLE)
  writeFileSync(join(dir, 'null.json'), 'null')
  const cases: Array<[string, string[], RegExp]> = [
    [
      'missing file',
      ['convert', join(dir, 'absent.xhtml')],
      /cannot read .*absent\.xhtml: ENOENT: no such file/,
    ],
    ['a directory', ['convert', dir], /cannot read .*: EISDIR/],
    [
      'JSON null',
      ['convert', join(dir, 'null.json')],
      /no body\.storage in this response \(it has: no body\)/,
    ],
    [
      'over the size limit',
      ['convert', '--max-bytes', '100', file],
      /page body is \d+ bytes, over the 100-byte limit/,
    ],
    [
      'bad --max-bytes',
      ['convert', '--max-bytes', 'lots', file],
      /--max-bytes must be a whole number/,
    ],
    ['unknown command', ['summarise', file], /unknown command 'summarise'/],
    ['unknown option', ['convert', '--frobnicate', file], /unknown option --frobnicate/],
    ['option without value', ['convert', file, '--space'], /'--space <value>' argument missing/],
    [
      'JSON without a body',
      ['convert', '-'],
      /stdin: no body\.storage in this response \(it has: no body\)/,
    ],
    ['broken JSON', ['convert', '-'], /stdin: not valid JSON/],
  ]
  // Independent runs, so they run side by side.
  const runs = await Promise.all(
    cases.map(([what, args]) =>
      cnfl(args, what.startsWith('JSON') ? '{"id":"1"}' : what === 'broken JSON' ? '{"id":' : ''),
    ),
  )
  cases.forEach(([what, , message], i) => {
    const run = runs[i] as Run
    t.equal(run.code, 1, `${what}: exit 1`)
    t.equal(run.stdout, '', `${what}: nothing on stdout`)
    t.match(run.stderr, message, what)
    t.match(run.stderr, /^cnfl: [^\n]+\n$/, `${what}: one line`)
    t.notMatch(run.stderr, /\bat .*\.ts:\d+/, `${what}: no stack trace`)
  })

  const usage = [[], ['convert'], ['convert', file, file]]
  const usageRuns = await Promise.all(usage.map((args) => cnfl(args)))
  usage.forEach((args, i) => {
    const run = usageRuns[i] as Run
    t.equal(run.code, 2, `cnfl ${args.join(' ')}: usage, exit 2`)
    t.match(run.stderr, /Usage: cnfl <command>/)
  })
})

t.test('--help lists what exists', async (t) => {
  const asks = [['--help'], ['convert', '--help'], ['-h']]
  const runs = await Promise.all(asks.map((args) => cnfl(args)))
  for (const run of runs) {
    t.equal(run.code, 0)
    t.match(run.stdout, /Usage: cnfl <command>/)
    t.match(run.stdout, /convert FILE/)
    for (const option of [
      '--base-url',
      '--space',
      '--page-id',
      '--jira-url',
      '--kind',
      '--title',
      '--max-bytes',
    ]) {
      t.match(run.stdout, option)
    }
    for (const command of [
      'ingest SOURCE_ID',
      'convert FILE',
      'search QUERY',
      'ask QUESTION',
      'eval FILE',
    ]) {
      t.match(run.stdout, command)
    }
  }
})

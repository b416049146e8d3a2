import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import {
  ExportError,
  inspectExport,
  openExportSource,
  UNREADABLE_VERSION,
} from '../../../services/worker/src/confluence/export.ts'
import {
  type ExportLinks,
  parseMetadataDate,
  parsePage,
} from '../../../services/worker/src/confluence/export-html.ts'
import type {
  ConfluenceSource,
  PageBody,
  PageFailure,
  PageRef,
  SourceSpec,
} from '../../../services/worker/src/confluence/types.ts'
import { convertStorage } from '../../../services/worker/src/convert/index.ts'
import { buildExportZip, exportFileName, writeZip } from '../../helpers/confluence-export.ts'
import type { StandInPage } from '../../helpers/confluence-stand-in.ts'

const SAMPLE = fileURLToPath(
  new URL(
    '../../../../shared/fixtures/confluence/bdfinst__confluence2md/test/assets/page1/',
    import.meta.url,
  ),
)

const spec = (path: string, extra: Partial<SourceSpec> = {}): SourceSpec => ({
  id: 'src-export',
  name: 'Export',
  kind: 'export',
  base_url: '',
  spaces: [],
  export_path: path,
  created_at: '2024-01-01T00:00:00.000Z',
  ...extra,
})

async function list(source: ConfluenceSource): Promise<PageRef[]> {
  const refs: PageRef[] = []
  for await (const ref of source.listPages()) refs.push(ref)
  return refs
}

const isBody = (b: PageBody | PageFailure): b is PageBody => 'body' in b

/** The bodies of fenced code blocks in a markdown text (in list items too: dedented). */
const fences = (markdown: string) =>
  [...markdown.matchAll(/^( *)(`{3,})[^\n]*\n([\s\S]*?)\n\1\2$/gm)].map(([, indent, , body]) =>
    (body as string).replace(new RegExp(`^${indent}`, 'gm'), ''),
  )

/**
 * Edits the central directory record of each entry of a zip file in place: `edit(buffer, offset)`
 * gets the record's offset (signature at +0, uncompressed size at +24).
 */
function patchCentralDirectory(path: string, edit: (zip: Buffer, record: number) => void) {
  const zip = readFileSync(path)
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]))
  let at = zip.readUInt32LE(eocd + 16)
  for (let n = zip.readUInt16LE(eocd + 10); n > 0; n--) {
    const next =
      at + 46 + zip.readUInt16LE(at + 28) + zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32)
    edit(zip, at)
    at = next
  }
  writeFileSync(path, zip)
}

const capture = () => {
  const lines: string[] = []
  return { lines, log: { warn: (_obj: object, msg: string) => void lines.push(msg) } }
}

// ---------------------------------------------------------------------------------------------
// The real 2016 export

if (!existsSync(SAMPLE)) {
  t.skip(
    `real export sample: ${SAMPLE} is absent (the shared fixtures live beside the project)`,
    () => {},
  )
} else {
  t.test('a real Confluence HTML export (bdfinst sample, zipped under its folder)', async (t) => {
    const dir = t.testdir()
    const zipPath = join(dir, 'real.zip')
    const files = readdirSync(SAMPLE, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name))
    await writeZip(
      zipPath,
      files.map((f): [string, Buffer] => [`page1/${relative(SAMPLE, f)}`, readFileSync(f)]),
    )

    t.same(await inspectExport(zipPath), {
      spaceKey: 'My article',
      spaceName: '11. My article',
      pages: 4,
    })
    const source = openExportSource(spec(zipPath))
    t.teardown(() => source.close())
    const refs = await list(source)
    // The zip is the whole listing: whatever it left out is gone.
    t.same(await source.confirmGone(['1', '9568346']), ['1', '9568346'])
    // A page asked for twice is read and answered once.
    const twice = await source.fetchBodies([refs[0] as PageRef, refs[0] as PageRef])
    t.same(
      twice.map((body) => body.id),
      [refs[0]?.id],
    )
    // Tree order from index.html: the home page, then depth first.
    t.same(
      refs.map((r) => [r.id, r.title, r.parentId, r.updatedAt]),
      [
        // Its own title line reads "11. Clubspire : Clubspire"; the breadcrumbs name the space so.
        ['9568346', 'Clubspire', undefined, '2015-02-23T00:00:00.000Z'],
        ['9568537', 'Webclient', '9568346', '2015-02-24T00:00:00.000Z'],
        ['9273401', 'JavaScript', '9568537', '2015-02-24T00:00:00.000Z'],
        ['9273380', 'Zprovoznění', '9568537', '2015-01-29T00:00:00.000Z'],
      ],
    )
    for (const ref of refs) {
      t.match(ref, { spaceKey: 'My article', labels: [], url: `export://My%20article/${ref.id}` })
      t.match(ref.version, /^[0-9a-f]{64}$/)
    }
    t.same(await source.spaceNames(), new Map([['My article', '11. My article']]))

    const bodies = (await source.fetchBodies(refs)).filter(isBody)
    t.equal(bodies.length, 4)
    const byId = new Map(bodies.map((b) => [b.id, b]))
    for (const b of bodies) {
      t.equal(b.format, 'view')
      t.equal(b.version, refs.find((r) => r.id === b.id)?.version, 'same version as listed')
    }
    // Webclient's body is empty in the export itself; the others have content.
    t.equal(byId.get('9568537')?.body, '')
    for (const id of ['9568346', '9273401', '9273380']) t.ok(byId.get(id)?.body.length, id)

    const setup = convertStorage(byId.get('9273380')?.body as string).markdown
    t.same(fences(setup), [
      'webClient.security.interceptUrl.access.timeline=permitAll\n' +
        'webClient.timeline.access.authenticatedOnly=false',
    ])
    t.match(setup, '## Předpoklady')
    t.match(setup, '\\<tomcatDir>/bin', 'entities decoded once (then escaped for markdown)')
    t.notMatch(setup, '&lt;')
    const home = convertStorage(byId.get('9568346')?.body as string).markdown
    t.match(home, '[Webclient](export://My%20article/9568537)')
    t.match(home, '[Zprovoznění](export://My%20article/9273380)')
    const js = convertStorage(byId.get('9273401')?.body as string).markdown
    t.match(js, '## Zakladni info')
  })
}

// ---------------------------------------------------------------------------------------------
// A generated export of a small tree

const CODE = 'public class Hello {\n  // a < b && c > d\n  String s = "]]>";\n}\n'
const cdata = (text: string) => `<![CDATA[${text.replace(/]]>/g, ']]]]><![CDATA[>')}]]>`

function tree(): StandInPage[] {
  return [
    {
      id: '1001',
      title: 'Team Handbook',
      spaceKey: 'DEMO',
      version: 3,
      updatedAt: '2024-03-05T10:11:12.000Z',
      storage:
        '<p>Welcome. Read the <ac:link><ri:page ri:content-title="Setup Guide" /><ac:plain-text-link-body>' +
        `${cdata('setup guide')}</ac:plain-text-link-body></ac:link> first, then ` +
        '<ac:link><ri:page ri:content-title="Zprovoznění" /></ac:link>.</p>' +
        '<table><tbody><tr><th><p>Name</p></th><th><p>Role</p></th></tr>' +
        '<tr><td><p>Ada</p></td><td><p>Lead</p></td></tr></tbody></table>' +
        '<ac:structured-macro ac:name="info" ac:schema-version="1"><ac:parameter ac:name="title">Heads up</ac:parameter>' +
        '<ac:rich-text-body><p>Panels keep their text.</p></ac:rich-text-body></ac:structured-macro>' +
        '<p>Mood <ac:emoticon ac:name="smile" /> and <ac:link><ri:user ri:username="ada" /></ac:link>; ' +
        'see <ac:link><ri:page ri:space-key="OTHER" ri:content-title="Elsewhere Page" /></ac:link>, ' +
        '<ac:link ac:anchor="roles"><ac:link-body><em>roles</em></ac:link-body></ac:link>, ' +
        '<ac:link><ri:url ri:value="https://example.com/x?a=1&amp;b=2" /></ac:link> and ' +
        '<ac:link><ri:attachment ri:filename="plan.pdf" /></ac:link>.</p>' +
        '<p><ac:image ac:alt="Org chart"><ri:attachment ri:filename="org chart.png" /></ac:image>' +
        '<ac:image><ri:url ri:value="https://example.com/logo.png" /></ac:image><ac:image></ac:image></p>' +
        '<ac:task-list><ac:task><ac:task-id>1</ac:task-id><ac:task-status>complete</ac:task-status>' +
        '<ac:task-body>done thing</ac:task-body></ac:task><ac:task><ac:task-id>2</ac:task-id>' +
        '<ac:task-status>incomplete</ac:task-status><ac:task-body>open thing</ac:task-body></ac:task></ac:task-list>' +
        '<ac:structured-macro ac:name="toc" />',
    },
    {
      id: '1002',
      title: 'Setup Guide',
      spaceKey: 'DEMO',
      parentId: '1001',
      version: 7,
      updatedAt: '2024-02-29T23:59:59.000Z',
      storage:
        '<h2>Install</h2><ac:structured-macro ac:name="code"><ac:parameter ac:name="language">java</ac:parameter>' +
        `<ac:parameter ac:name="title">Hello.java</ac:parameter><ac:plain-text-body>${cdata(CODE)}</ac:plain-text-body>` +
        '</ac:structured-macro><ac:structured-macro ac:name="noformat"><ac:plain-text-body>' +
        `${cdata('raw <text> & more')}</ac:plain-text-body></ac:structured-macro>` +
        '<ac:structured-macro ac:name="code"><ac:plain-text-body>' +
        `${cdata('echo default')}</ac:plain-text-body></ac:structured-macro>` +
        '<ac:structured-macro ac:name="expand"><ac:parameter ac:name="title">More</ac:parameter>' +
        '<ac:rich-text-body><p>Expanded <ac:placeholder>type here</ac:placeholder>text.</p>' +
        '<ac:structured-macro ac:name="widget"><ac:plain-text-body>' +
        `${cdata('plain body')}</ac:plain-text-body></ac:structured-macro></ac:rich-text-body></ac:structured-macro>` +
        '<table class="wrapped"><tbody><tr><td class="highlight">x</td></tr></tbody></table>',
    },
    {
      id: '1003',
      title: 'Zprovoznění',
      spaceKey: 'DEMO',
      parentId: '1002',
      version: 1,
      storage:
        '<p>Čeština funguje. Back to <ac:link ac:anchor="install"><ri:page ri:content-title="Setup Guide" /></ac:link>.</p>',
    },
    {
      id: '1004',
      title: 'Release notes: 2.0',
      spaceKey: 'DEMO',
      parentId: '1001',
      version: 2,
      storage: '<p>Nothing yet.</p>',
    },
    // Another space's page: not in this space's export.
    { id: '2001', title: 'Elsewhere Page', spaceKey: 'OTHER', version: 1, storage: '<p>x</p>' },
  ]
}

type BuildOptions = { topFolder?: boolean; baseUrl?: string; omitFiles?: string[] }
const build = (dir: string, name: string, pages: StandInPage[], extra: BuildOptions = {}) =>
  buildExportZip(pages, {
    spaceKey: 'DEMO',
    spaceName: 'Demo Space',
    path: join(dir, name),
    ...extra,
  })

t.test(
  'file names: spaces become dashes, punctuation goes, non-ASCII titles use the id',
  async (t) => {
    t.equal(exportFileName({ id: '9568346', title: 'My article' }), 'My-article_9568346.html')
    t.equal(exportFileName({ id: '5', title: 'Release notes: 2.0' }), 'Release-notes-20_5.html')
    t.equal(exportFileName({ id: '9273380', title: 'Zprovoznění' }), '9273380.html')
    t.equal(exportFileName({ id: '7', title: '???' }), '7.html')
  },
)

t.test('a generated export round-trips ids, titles, parents and stable versions', async (t) => {
  const dir = t.testdir()
  const pages = tree()
  const rooted = await build(dir, 'root.zip', pages)
  const folded = await build(dir, 'folder.zip', pages, { topFolder: true })
  t.same(
    [...rooted.files],
    [
      ['1001', 'Team-Handbook_1001.html'],
      ['1002', 'Setup-Guide_1002.html'],
      ['1003', '1003.html'],
      ['1004', 'Release-notes-20_1004.html'],
    ],
  )

  t.same(await inspectExport(rooted.path), { spaceKey: 'DEMO', spaceName: 'Demo Space', pages: 4 })
  t.same(await inspectExport(folded.path), { spaceKey: 'DEMO', spaceName: 'Demo Space', pages: 4 })

  const a = openExportSource(spec(rooted.path))
  const b = openExportSource(spec(folded.path))
  t.teardown(() => Promise.all([a.close(), b.close()]))
  const refs = await list(a)
  t.same(
    refs.map((r) => [r.id, r.title, r.parentId, r.updatedAt]),
    [
      ['1001', 'Team Handbook', undefined, '2024-03-05T00:00:00.000Z'],
      ['1002', 'Setup Guide', '1001', '2024-02-29T00:00:00.000Z'],
      ['1003', 'Zprovoznění', '1002', undefined],
      ['1004', 'Release notes: 2.0', '1001', undefined],
    ],
  )
  t.same(refs[0], {
    id: '1001',
    spaceKey: 'DEMO',
    title: 'Team Handbook',
    version: refs[0]?.version,
    labels: [],
    updatedAt: '2024-03-05T00:00:00.000Z',
    url: 'export://DEMO/1001',
  })
  t.notOk('parentId' in (refs[0] as PageRef), 'no parentId key on a root page')
  t.notOk('updatedAt' in (refs[2] as PageRef), 'no updatedAt key without a date')
  // Root or folder layout: the same pages, the same versions.
  t.same(await list(b), refs)

  // The same pages built again give the same versions; one changed page changes only its own.
  const again = await build(dir, 'again.zip', pages)
  const changed = tree()
  ;(changed[2] as StandInPage).storage = '<p>Čeština funguje lépe.</p>'
  const edited = await build(dir, 'edited.zip', changed)
  const c = openExportSource(spec(again.path))
  const d = openExportSource(spec(edited.path))
  t.teardown(() => Promise.all([c.close(), d.close()]))
  const versions = (rs: PageRef[]) => rs.map((r) => r.version)
  t.same(versions(await list(c)), versions(refs))
  const after = versions(await list(d))
  t.same(
    after.map((v, i) => v === refs[i]?.version),
    [true, true, false, true],
  )
  // A renamed page has a new version too.
  const renamed = tree()
  ;(renamed[3] as StandInPage).title = 'Release notes: 2.1'
  const e = openExportSource(spec((await build(dir, 'renamed.zip', renamed)).path))
  t.teardown(() => e.close())
  t.not((await list(e))[3]?.version, refs[3]?.version)
})

t.test('bodies of a generated export convert: code verbatim, tables, links, panels', async (t) => {
  const dir = t.testdir()
  const pages = tree()
  const zip = await build(dir, 'demo.zip', pages, { topFolder: true })
  const source = openExportSource(spec(zip.path))
  t.teardown(() => source.close())
  const refs = await list(source)
  const bodies = await source.fetchBodies(refs)
  t.equal(bodies.length, 4)
  const md = new Map(
    bodies.filter(isBody).map((b) => [b.id, convertStorage(b.body, { spaceKey: 'DEMO' }).markdown]),
  )
  const home = md.get('1001') as string
  const setup = md.get('1002') as string

  // Code: the same text as the storage converter gets from the REST body, byte for byte.
  const rest = convertStorage((pages[1] as StandInPage).storage).markdown
  t.same(fences(setup), fences(rest))
  t.same(fences(setup), [
    CODE.replace(/\n$/, ''),
    'raw <text> & more',
    'echo default',
    'plain body',
  ])
  t.match(setup, '**Hello.java**', 'the code title stays, above the block')
  t.match(setup, 'Expanded text.')
  t.notMatch(setup, 'type here', 'placeholders are not content')
  t.match(setup, '| x |')

  t.match(home, '| Name | Role |\n| --- | --- |\n| Ada | Lead |')
  t.match(home, '[setup guide](export://DEMO/1002)')
  t.match(home, '[Zprovoznění](export://DEMO/1003)')
  t.match(home, 'Panels keep their text.')
  t.match(home, 'Mood (smile) and [ada](/display/~ada)')
  t.match(home, '[Elsewhere Page](/display/OTHER/Elsewhere+Page)')
  t.match(home, '[_roles_](#TeamHandbook-roles)')
  t.match(home, '[https://example.com/x?a=1&b=2](https://example.com/x?a=1&b=2)')
  t.match(home, '[plan.pdf](export://DEMO/attachments/1001/plan.pdf)')
  t.match(home, '![Org chart](export://DEMO/attachments/1001/org%20chart.png)')
  t.match(home, '![](https://example.com/logo.png)')
  t.match(home, /- done thing\n- open thing/)
  t.notMatch(home, 'Attachments:', 'the attachments section is chrome')
  t.notMatch(home, 'Document generated', 'the footer is chrome')
  t.match(md.get('1003'), '[Setup Guide](export://DEMO/1002#SetupGuide-install)')
})

t.test('with a base URL, links point at the site', async (t) => {
  const dir = t.testdir()
  const base = 'https://wiki.example.com/confluence'
  const zip = await build(dir, 'demo.zip', tree(), { baseUrl: base })
  const source = openExportSource(spec(zip.path, { base_url: `${base}/` }))
  t.teardown(() => source.close())
  const refs = await list(source)
  t.equal(refs[1]?.url, `${base}/pages/viewpage.action?pageId=1002`)
  const [home] = (await source.fetchBodies(refs.slice(0, 1))).filter(isBody)
  const md = convertStorage((home as PageBody).body).markdown
  t.match(md, `[setup guide](${base}/pages/viewpage.action?pageId=1002)`)
  t.match(md, `[Elsewhere Page](${base}/display/OTHER/Elsewhere+Page)`)
  t.match(md, `[plan.pdf](${base}/download/attachments/1001/plan.pdf)`)
  t.match(md, `![Org chart](${base}/download/attachments/1001/org%20chart.png)`)
})

t.test(
  'a page file missing from the zip: skipped when listing, a PageFailure when fetched',
  async (t) => {
    const dir = t.testdir()
    const zip = await build(dir, 'demo.zip', tree(), { omitFiles: ['1004'] })
    t.equal((await inspectExport(zip.path)).pages, 3)
    const { lines, log } = capture()
    const source = openExportSource(spec(zip.path), { log })
    t.teardown(() => source.close())
    const refs = await list(source)
    t.same(
      refs.map((r) => r.id),
      ['1001', '1002', '1003'],
    )
    t.same(lines, ['page listed in index.html has no file: skipped'])
    const gone: PageRef = { ...(refs[0] as PageRef), id: '1004', title: 'Release notes: 2.0' }
    const out = await source.fetchBodies([refs[0] as PageRef, gone])
    t.ok(isBody(out[0] as PageBody))
    t.same(out[1], { id: '1004', message: `page 1004 has no file in the export ${zip.path}` })
  },
)

t.test('not an export: clear errors, from inspectExport and from the source', async (t) => {
  const dir = t.testdir()
  const notExport = join(dir, 'photos.zip')
  await writeZip(notExport, [['holiday/readme.txt', 'hello']])
  await t.rejects(inspectExport(notExport), {
    name: 'ExportError',
    message: `${notExport} is not a Confluence HTML space export: no index.html`,
  })
  const corrupt = join(dir, 'corrupt.zip')
  writeFileSync(corrupt, 'PK\u0003\u0004 this is not really a zip file')
  await t.rejects(inspectExport(corrupt), {
    message: new RegExp(
      `^${corrupt} is not a Confluence HTML space export: not a readable zip \\(`,
    ),
  })
  await t.rejects(inspectExport(join(dir, 'absent.zip')), {
    message: /not a readable zip \(ENOENT/,
  })
  // A zip whose directory is damaged after its end record was found.
  const damaged = join(dir, 'damaged.zip')
  await writeZip(damaged, [['index.html', '<table></table>']])
  patchCentralDirectory(damaged, (zip, record) => zip.writeUInt32LE(0x12345678, record))
  await t.rejects(inspectExport(damaged), {
    message:
      /is not a Confluence HTML space export: not a readable zip \(invalid central directory/,
  })
  // An index.html whose data does not match its directory entry.
  const truncated = join(dir, 'truncated.zip')
  await writeZip(truncated, [['index.html', '<table><tr><th>Key</th><td>K</td></tr></table>']])
  patchCentralDirectory(truncated, (zip, record) => zip.writeUInt32LE(3, record + 24))
  await t.rejects(inspectExport(truncated), {
    message: /is not a Confluence HTML space export: index\.html cannot be read \(/,
  })

  const site = join(dir, 'site.zip')
  await writeZip(site, [
    ['index.html', '<html><body><ul><li><a href="About_1.html">About</a></li></ul></body></html>'],
  ])
  await t.rejects(inspectExport(site), { message: /index\.html has no space details table$/ })

  const two = join(dir, 'two.zip')
  const index = '<table><tr><th>Key</th><td>A</td></tr></table>'
  await writeZip(two, [
    ['A/index.html', index],
    ['B/index.html', index],
  ])
  await t.rejects(inspectExport(two), {
    message: /several space folders \(A, B\); export one space per zip$/,
  })

  const keyless = join(dir, 'keyless.zip')
  await writeZip(keyless, [['index.html', '<table><tr><th>Key</th><td> </td></tr></table>']])
  await t.rejects(inspectExport(keyless), { message: /index\.html names no space key$/ })

  // The source throws the same error where it first reads the zip; a later call tries again.
  const source = openExportSource(spec(notExport))
  t.teardown(() => source.close())
  await t.rejects(list(source), ExportError)
  await t.rejects(source.spaceNames(), { message: /no index\.html$/ })
  await t.rejects(source.fetchBodies([]), { message: /no index\.html$/ })

  t.throws(() => openExportSource({ ...spec(notExport), kind: 'cloud' }), {
    message: 'source src-export is a cloud source, not an export',
  })
  t.throws(() => openExportSource(spec('')), {
    message: 'export source src-export has no export_path',
  })
})

t.test('index.html in another language, a key only in the folder name', async (t) => {
  const dir = t.testdir()
  const czech =
    '<table><tr><th>Klíč</th><td></td></tr><tr><th>Název</th><td>Příručka</td></tr>' +
    '<tr><th>Popis</th></tr></table>' +
    '<ul><li><a href="Uvod_1.html">Úvod</a></li></ul>'
  const zip = join(dir, 'czech.zip')
  await writeZip(zip, [
    ['PRIR/index.html', czech],
    ['PRIR/Uvod_1.html', '<title>Příručka : Úvod</title><div id="main-content"><p>Ahoj</p></div>'],
    ['PRIR/attachments/1/2.png', 'png'],
    ['other.txt', 'not part of the export'],
  ])
  t.same(await inspectExport(zip), { spaceKey: 'PRIR', spaceName: 'Příručka', pages: 1 })
  // No name either: the key stands in for it.
  const bare = join(dir, 'bare.zip')
  await writeZip(bare, [['X/index.html', '<table><tr><td></td></tr></table>']])
  t.same(await inspectExport(bare), { spaceKey: 'X', spaceName: 'X', pages: 0 })
})

t.test('pages outside the tree, odd page files, unreadable pages', async (t) => {
  const dir = t.testdir()
  const index =
    '<table><tr><th>Key</th><td>ODD</td></tr><tr><th>Name</th><td>Odd Space</td></tr></table>' +
    '<ul><li><span><a href="Top_1.html">Top</a></span><ul><li><a href="6.html">Untitled</a></li>' +
    '<li><a href="Big_5.html">Big</a></li><li><a name="x"></a><a href="Listed_7.html">Listed</a></li></ul></li>' +
    '<li><a href="Top_1.html">Top again</a></li></ul><p><a href="Top_1.html">not in a list</a></p>'
  const page = (title: string, crumbs: string, body: string) =>
    `<html><head><title>${title}</title></head><body><ol id="breadcrumbs">${crumbs}</ol>` +
    `<div id="content"><div class="page-metadata">Created on 01.02.2020</div>${body}</div></body></html>`
  const zip = join(dir, 'odd.zip')
  await writeZip(zip, [
    ['index.html', index],
    [
      'Top_1.html',
      page(
        'Odd Space : Top',
        '<li><a href="index.html">Odd Space</a></li>',
        '<div id="main-content"><p>top</p></div>',
      ),
    ],
    // Not in the tree: its parent comes from its breadcrumbs.
    [
      'Child_2.html',
      page(
        'Renamed Space : Child : part',
        '<li><a href="index.html">Renamed Space</a></li><li><a>?</a><a href="Top_1.html">Top</a></li>',
        '<div id="main-content"><p>child</p></div>',
      ),
    ],
    // No breadcrumbs, no main-content: the content div without its chrome; title after " : ".
    [
      '3.html',
      page(
        'Old name : Loose',
        '',
        '<p>loose text</p><div class="pageSection"><h2 id="comments">Comments:</h2><p>a comment</p></div>' +
          '<div id="footer">footer</div><script>x()</script>',
      ),
    ],
    // Neither a prefix nor a listed title: the whole title line.
    ['Plain_4.html', page('Just a title', '', '<div id="main-content"></div>')],
    [
      'Big_5.html',
      `<title>Odd Space : Big</title><div id="main-content">${'x'.repeat(5000)}</div>`,
    ],
    // Unreadable and not in the tree: listed under its id.
    ['Huge_8.html', `<div id="main-content">${'y'.repeat(5000)}</div>`],
    // A title line without a known prefix: the title index.html lists.
    ['Listed_7.html', page('Unknown Space : Listed title', '', '<div id="main-content">l</div>')],
    // No title at all: the title index.html lists.
    ['6.html', '<div id="main-content">untitled</div>'],
    // The same id twice: the first file wins. Deeper folders and other files are not pages.
    ['Top-copy_1.html', page('Odd Space : Copy', '', '<p>copy</p>')],
    ['attachments/1/9.html', 'not a page'],
    ['notes.txt', 'not a page'],
  ])
  const { lines, log } = capture()
  const source = openExportSource(spec(zip), { log, maxPageBytes: 4096 })
  t.teardown(() => source.close())
  const refs = await list(source)
  t.same(
    refs.map((r) => [r.id, r.title, r.parentId]),
    [
      ['1', 'Top', undefined],
      ['6', 'Untitled', '1'],
      ['5', 'Big', '1'],
      ['7', 'Listed', '1'],
      ['2', 'Child : part', '1'],
      ['3', 'Loose', undefined],
      ['4', 'Just a title', undefined],
      ['8', '8', undefined],
    ],
  )
  t.equal(refs[2]?.version, UNREADABLE_VERSION)
  t.same(lines, ['page file cannot be read', 'page file cannot be read'])
  t.equal(refs[7]?.version, UNREADABLE_VERSION)
  t.equal(refs[4]?.updatedAt, '2020-02-01T00:00:00.000Z')

  const out = await source.fetchBodies(refs)
  t.match(out[2], {
    id: '5',
    message: /^page 5: Big_5\.html is \d+ bytes, over the 4096-byte limit$/,
  })
  const loose = out[5] as PageBody
  t.equal(loose.body, '<p>loose text</p>')
  t.equal(loose.version, refs[5]?.version)
  t.equal((out[1] as PageBody).body, 'untitled')
})

t.test('root_page_id narrows the listing to a subtree', async (t) => {
  const dir = t.testdir()
  const zip = await build(dir, 'demo.zip', tree())
  const ids = async (extra: Partial<SourceSpec>) => {
    const source = openExportSource(spec(zip.path, extra))
    const refs = await list(source)
    await source.close()
    return refs.map((r) => r.id)
  }
  t.same(await ids({ root_page_id: '1002' }), ['1002', '1003'])
  t.same(await ids({ root_page_id: '1001' }), ['1001', '1002', '1003', '1004'])
  t.same(await ids({ root_page_id: '999' }), [])
})

t.test('label and CQL filters are ignored, with a warning', async (t) => {
  const dir = t.testdir()
  const zip = await build(dir, 'demo.zip', tree())
  for (const extra of [
    { cql: 'type = page' },
    { labels: { include: ['x'] } },
    { labels: { exclude: ['y'] } },
  ] as Array<Partial<SourceSpec>>) {
    const { lines, log } = capture()
    const source = openExportSource(spec(zip.path, extra), { log })
    t.equal((await list(source)).length, 4)
    t.same(lines, [
      'cql and label filters do not apply to an HTML export (it carries no labels): ignored',
    ])
    await source.close()
  }
  const { lines, log } = capture()
  const source = openExportSource(spec(zip.path, { labels: {} }), { log })
  t.teardown(() => source.close())
  t.equal((await list(source)).length, 4)
  t.same(lines, [])
})

t.test('abort signals stop listing and fetching', async (t) => {
  const dir = t.testdir()
  const zip = await build(dir, 'demo.zip', tree())
  const source = openExportSource(spec(zip.path))
  t.teardown(() => source.close())
  const refs = await list(source)
  const aborted = AbortSignal.abort()
  await t.rejects(
    async () => {
      for await (const _ of source.listPages(aborted)) t.fail('nothing is listed')
    },
    { name: 'AbortError' },
  )
  await t.rejects(source.fetchBodies(refs, aborted), { name: 'AbortError' })
})

t.test('close: idempotent, reopens on the next call, safe while opening fails', async (t) => {
  const dir = t.testdir()
  const zip = await build(dir, 'demo.zip', tree())
  const source = openExportSource(spec(zip.path))
  await source.close()
  t.equal((await list(source)).length, 4)
  await source.close()
  await source.close()
  t.same(await source.spaceNames(), new Map([['DEMO', 'Demo Space']]))
  t.same(await source.goneSpaces(), [], 'an export cannot lose its one space')
  await source.close()

  const broken = openExportSource(spec(join(dir, 'absent.zip')))
  const pending = broken.spaceNames()
  await broken.close()
  await t.rejects(pending, ExportError)
})

t.test("parseMetadataDate reads the last date in the exporter's formats", async (t) => {
  t.equal(
    parseMetadataDate('Created by A, last modified on 24.02.2015'),
    '2015-02-24T00:00:00.000Z',
  )
  t.equal(parseMetadataDate('Created by A on 1. 2. 2015'), '2015-02-01T00:00:00.000Z')
  t.equal(parseMetadataDate('last updated on 2019-03-05'), '2019-03-05T00:00:00.000Z')
  t.equal(parseMetadataDate('last modified by B on Mar 05, 2019'), '2019-03-05T00:00:00.000Z')
  t.equal(parseMetadataDate('last modified on 5 Sept. 2019'), '2019-09-05T00:00:00.000Z')
  t.equal(
    parseMetadataDate('Created on 01.01.2014, last modified on Feb 02, 2015'),
    '2015-02-02T00:00:00.000Z',
  )
  t.equal(parseMetadataDate('Created on 31.02.2015'), undefined, 'no such day')
  t.equal(parseMetadataDate('on Foo 12, 2015'), undefined, 'no such month')
  t.equal(parseMetadataDate('Created by System Administrator'), undefined)
})

t.test('body cleanup: code, links, images, chrome', async (t) => {
  const links = (base: string): ExportLinks => ({
    base,
    page: (id) => `page:${id}`,
    attachment: (pageId, file) => `att:${pageId}/${file}`,
  })
  const body = (html: string, base = '') =>
    parsePage(`<div id="main-content">${html}</div>`, {
      id: '1',
      spaceName: 'S',
      links: links(base),
    }).body

  t.equal(
    body(
      '<pre class="syntaxhighlighter-pre" data-syntaxhighlighter-params="brush: c++; gutter: false">a &lt; b &amp;&amp; c\n\u00a0x</pre>',
    ),
    '<pre><code class="language-c++">a &lt; b &amp;&amp; c\n&nbsp;x</code></pre>',
  )
  t.equal(
    body(
      '<pre data-syntaxhighlighter-params="theme: x; brush: not a name">y</pre><pre class="syntaxhighlighter-pre">z</pre>',
    ),
    '<pre><code>y</code></pre><pre><code>z</code></pre>',
  )
  t.equal(body('<pre>plain</pre>'), '<pre>plain</pre>', 'other <pre> stay as they are')
  t.equal(
    body(
      '<a href="My-Page_12.html#My-Page-x">p</a><a href="12.html">q</a><a href="index.html">space</a>' +
        '<a href="styles/site.css">css</a><a href="#here">h</a><a href="mailto:a@b.c">m</a><a name="n">anchor</a>',
    ),
    '<a href="page:12#My-Page-x">p</a><a href="page:12">q</a><span>space</span><span>css</span>' +
      '<a href="#here">h</a><a href="mailto:a@b.c">m</a><a name="n">anchor</a>',
  )
  t.equal(
    body(
      '<a href="/confluence/display/K/T">t</a><a href="//cdn.example/x">c</a>',
      'https://w.example/confluence',
    ),
    '<a href="https://w.example/confluence/display/K/T">t</a><a href="//cdn.example/x">c</a>',
  )
  t.equal(
    body('<a href="/display/K/T">t</a>'),
    '<a href="/display/K/T">t</a>',
    'no base: as written',
  )
  t.equal(
    body(
      '<a href="attachments/1/77.pdf" data-linked-resource-default-alias="spec.pdf">s</a>' +
        '<a href="attachments/1/78.txt">t</a>',
    ),
    '<a href="att:1/spec.pdf" data-linked-resource-default-alias="spec.pdf">s</a><a href="att:1/78.txt">t</a>',
  )
  t.equal(
    body(
      '<img src="attachments/1/5.png" data-linked-resource-default-alias="chart.png">' +
        '<img src="attachments/1/6.png" alt="Six">' +
        '<img src="attachments/1/7.png" title="Seven">' +
        '<img class="emoticon" src="images/icons/emoticons/smile.svg" alt="(smile)">' +
        '<img src="images/icons/x.png"><img alt="no source">' +
        '<img src="https://example.com/a.png" alt="a"><img src="data:image/png;base64,AA==">',
    ),
    '<img src="att:1/chart.png" alt="chart.png"><img src="att:1/6.png" alt="Six">' +
      '<img src="att:1/7.png" alt="Seven">(smile)no source' +
      '<img src="https://example.com/a.png" alt="a"><img src="data:image/png;base64,AA==">',
  )
  t.equal(
    body(
      '<p>kept</p><div class="pageSection group"><h2 id="attachments">Attachments:</h2></div>' +
        '<h2 id="comments">Comments</h2><div id="likes-and-labels-container">likes</div>' +
        '<div class="page-metadata">meta</div><style>p{}</style>',
    ),
    '<p>kept</p>',
  )
  t.equal(
    parsePage('<p>no content div</p>', { id: '1', spaceName: 'S', links: links('') }).body,
    '',
  )
})

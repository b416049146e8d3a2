/**
 * Hostile export zips (issue 13, item 2), over the reader the worker syncs with and over the
 * upload route (`POST /api/sources/export`, a real socket): entries named `../` or by absolute
 * path, symbolic links, zip bombs (honest sizes over the limits, and a size that lies), bodies
 * that are not zips or are cut short. Each is refused with an error that says why, and nothing
 * is written anywhere: the reader never unpacks a zip, which these tests check on the filesystem.
 * Cases export.test.ts already has (a zip without index.html, a damaged directory, an index.html
 * whose data is shorter than its entry says) are not repeated here.
 */
import { createWriteStream, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { MAX_INDEX_BYTES, MAX_INDEX_NODES } from '@confluence-bot/shared'
import t, { type Test } from 'tap'
import { ZipFile } from 'yazl'
import {
  DEFAULT_MAX_PAGE_BYTES,
  inspectExport,
  openExportSource,
  UNREADABLE_VERSION,
} from '../../../services/worker/src/confluence/export.ts'
import type {
  PageBody,
  PageFailure,
  PageRef,
  SourceSpec,
} from '../../../services/worker/src/confluence/types.ts'
import { ADMIN_KEY, bearer, listenTestApp, READER_KEY, tempDir } from '../../helpers/api.ts'
import { startRedis } from '../../helpers/redis.ts'

const INDEX =
  '<table><tr><th>Key</th><td>ENG</td></tr><tr><th>Name</th><td>Engineering</td></tr></table>' +
  '<ul><li><a href="Home_1.html">Home</a><ul><li><a href="Secret_2.html">Secret</a></li></ul></li></ul>'
const page = (title: string, body: string) =>
  `<html><head><title>Engineering : ${title}</title></head><body>` +
  `<div id="main-content">${body}</div></body></html>`
const HOME: Entry = { name: 'Home_1.html', data: page('Home', '<p>home page</p>') }

type Entry = { name: string; data: string | Buffer; mode?: number }

const SYMLINK = 0o120777
const FIXED_TIME = new Date('2024-01-01T00:00:00Z')

/**
 * Writes a zip. yazl refuses unsafe names, as it should: `rename` swaps a placeholder for the
 * hostile name afterwards, byte for byte (same length) in the local header and the directory.
 */
async function hostileZip(path: string, entries: Entry[], rename: Record<string, string> = {}) {
  const zip = new ZipFile()
  for (const { name, data, mode } of entries) {
    zip.addBuffer(Buffer.from(data), name, { mtime: FIXED_TIME, ...(mode ? { mode } : {}) })
  }
  zip.end()
  await pipeline(zip.outputStream, createWriteStream(path))
  const bytes = readFileSync(path)
  for (const [from, to] of Object.entries(rename)) {
    if (from.length !== to.length) throw new Error('a rename keeps the length')
    const needle = Buffer.from(from)
    const found: number[] = []
    for (let at = bytes.indexOf(needle); at !== -1; at = bytes.indexOf(needle, at + 1)) {
      found.push(at)
    }
    if (found.length !== 2) throw new Error(`${from} is not a name in the zip`)
    for (const at of found) bytes.write(to, at, 'latin1')
  }
  writeFileSync(path, bytes)
  return path
}

/** Sets every central directory record's uncompressed size (the one yauzl trusts). */
function lieAboutSize(path: string, name: string, size: number) {
  const zip = readFileSync(path)
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]))
  let at = zip.readUInt32LE(eocd + 16)
  for (let n = zip.readUInt16LE(eocd + 10); n > 0; n--) {
    const nameLength = zip.readUInt16LE(at + 28)
    if (zip.toString('latin1', at + 46, at + 46 + nameLength) === name) {
      zip.writeUInt32LE(size, at + 24)
    }
    at += 46 + nameLength + zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32)
  }
  writeFileSync(path, zip)
}

/** Every path under `dir`, for before/after comparisons. */
const tree = (dir: string) => readdirSync(dir, { recursive: true }).map(String).sort()

const spec = (path: string): SourceSpec => ({
  id: 'src-hostile',
  name: 'Hostile',
  kind: 'export',
  base_url: '',
  spaces: [],
  export_path: path,
  created_at: '2024-01-01T00:00:00.000Z',
})

/**
 * A sandbox: `outside/` holds what a traversal or a link would reach (a file that is a valid
 * index.html of another space, and a secret), `zips/` the hostile zips.
 */
function sandbox(t: Test) {
  const root = t.testdir({
    outside: {
      'index.html': INDEX.replace('ENG', 'STOLEN'),
      'secret.txt': 'TOPSECRET',
    },
    zips: {},
  })
  return {
    root,
    zips: join(root, 'zips'),
    secret: join(root, 'outside', 'secret.txt'),
    outsideIndex: join(root, 'outside', 'index.html'),
  }
}

const notAnExport = (why: RegExp) => ({
  name: 'ExportError',
  message: new RegExp(`is not a Confluence HTML space export: ${why.source}`),
})

t.test('entries named ../ or by absolute path are refused, nothing unpacked', async (t) => {
  const box = sandbox(t)
  const before = tree(box.root)
  const cases: Array<[string, Entry[], Record<string, string>, RegExp]> = [
    [
      'parent.zip',
      [{ name: 'index.html', data: INDEX }, HOME, { name: 'xx/Evil_3.html', data: 'x' }],
      { 'xx/Evil_3.html': '../Evil_3.html' },
      /not a readable zip \(invalid relative path: \.\.\/Evil_3\.html\)$/,
    ],
    [
      'deep-parent.zip',
      [
        { name: 'ENG/xx/xx/index.html', data: INDEX },
        { ...HOME, name: 'ENG/Home_1.html' },
      ],
      { 'ENG/xx/xx/index.html': 'ENG/../../index.html' },
      /not a readable zip \(invalid relative path: ENG\/\.\.\/\.\.\/index\.html\)$/,
    ],
    [
      'absolute.zip',
      [{ name: 'index.html', data: INDEX }, HOME, { name: '_tmp/index.html', data: INDEX }],
      { '_tmp/index.html': '/tmp/index.html' },
      /not a readable zip \(absolute path: \/tmp\/index\.html\)$/,
    ],
    // yauzl reads a backslash as the separator Windows zippers meant: this is a ../ entry too.
    [
      'backslash.zip',
      [{ name: 'index.html', data: INDEX }, HOME, { name: 'xx_Evil_3.html', data: 'x' }],
      { 'xx_Evil_3.html': '..\\Evil_3.html' },
      /not a readable zip \(invalid relative path: \.\.\/Evil_3\.html\)$/,
    ],
  ]
  for (const [name, entries, rename, why] of cases) {
    const zip = await hostileZip(join(box.zips, name), entries, rename)
    await t.rejects(inspectExport(zip), notAnExport(why), name)
    const source = openExportSource(spec(zip))
    await t.rejects(source.spaceNames(), notAnExport(why), `${name}: the source too`)
    await source.close()
  }
  t.same(
    tree(box.root),
    [...before, ...cases.map(([name]) => `zips/${name}`)].sort(),
    'only the zips themselves were written',
  )
})

t.test('symbolic links are never followed', async (t) => {
  const box = sandbox(t)
  // index.html as a link to a file that is a valid index.html (of another space): following it
  // would accept the zip as that space's export.
  const linkedIndex = await hostileZip(join(box.zips, 'linked-index.zip'), [
    { name: 'index.html', data: box.outsideIndex, mode: SYMLINK },
    HOME,
  ])
  await t.rejects(
    inspectExport(linkedIndex),
    notAnExport(/index\.html has no space details table$/),
  )

  // A page as a link to a secret: listed as unreadable, its fetch a failure naming the link.
  const linkedPage = await hostileZip(join(box.zips, 'linked-page.zip'), [
    { name: 'index.html', data: INDEX },
    HOME,
    { name: 'Secret_2.html', data: box.secret, mode: SYMLINK },
  ])
  t.same(await inspectExport(linkedPage), { spaceKey: 'ENG', spaceName: 'Engineering', pages: 2 })
  const warnings: string[] = []
  const source = openExportSource(spec(linkedPage), {
    log: { warn: (obj, msg) => warnings.push(`${msg}: ${String((obj as { err?: Error }).err)}`) },
  })
  t.teardown(() => source.close())
  const refs: PageRef[] = []
  for await (const ref of source.listPages()) refs.push(ref)
  t.same(
    refs.map((r) => [r.id, r.title, r.version === UNREADABLE_VERSION]),
    [
      ['1', 'Home', false],
      ['2', 'Secret', true],
    ],
  )
  t.same(warnings, [
    'page file cannot be read: ExportError: Secret_2.html is a symbolic link, not a page file',
  ])
  const [home, secret] = await source.fetchBodies(refs)
  t.match(home as PageBody, { id: '1', body: /home page/ })
  t.same(secret as PageFailure, {
    id: '2',
    message: 'page 2: Secret_2.html is a symbolic link, not a page file',
  })
  t.notOk(JSON.stringify([refs, home, secret, warnings]).includes('TOPSECRET'))
  t.same(tree(box.root), [
    'outside',
    'outside/index.html',
    'outside/secret.txt',
    'zips',
    'zips/linked-index.zip',
    'zips/linked-page.zip',
  ])
})

t.test(
  'zip bombs: refused by the sizes before inflating, or when the data outgrows them',
  async (t) => {
    const box = sandbox(t)
    // An index.html one byte over its limit: 64 MB of spaces is a zip of well under a megabyte.
    const indexBomb = await hostileZip(join(box.zips, 'index-bomb.zip'), [
      {
        name: 'index.html',
        data: Buffer.concat([
          Buffer.from(INDEX),
          Buffer.alloc(MAX_INDEX_BYTES + 1 - INDEX.length, 32),
        ]),
      },
      HOME,
    ])
    t.ok(readFileSync(indexBomb).length < 1024 * 1024, 'a small zip')
    await t.rejects(
      inspectExport(indexBomb),
      notAnExport(
        new RegExp(
          `index\\.html cannot be read \\(index\\.html is ${MAX_INDEX_BYTES + 1} bytes, over the ${MAX_INDEX_BYTES}-byte limit\\)$`,
        ),
      ),
    )

    // A page over the page limit; and a page whose directory entry says 2 KB but inflates to
    // 40 MB: the read stops at the first byte past what the entry promised.
    const pageBomb = await hostileZip(join(box.zips, 'page-bomb.zip'), [
      { name: 'index.html', data: INDEX },
      { name: 'Home_1.html', data: Buffer.alloc(DEFAULT_MAX_PAGE_BYTES + 1, 32) },
      { name: 'Secret_2.html', data: Buffer.alloc(40 * 1024 * 1024, 32) },
    ])
    lieAboutSize(pageBomb, 'Secret_2.html', 2048)
    t.ok(readFileSync(pageBomb).length < 1024 * 1024, 'a small zip')
    const source = openExportSource(spec(pageBomb))
    t.teardown(() => source.close())
    const refs: PageRef[] = []
    for await (const ref of source.listPages()) refs.push(ref)
    t.same(
      refs.map((r) => r.version),
      [UNREADABLE_VERSION, UNREADABLE_VERSION],
    )
    const out = (await source.fetchBodies(refs)) as PageFailure[]
    t.same(
      out.map((f) => f.id),
      ['1', '2'],
    )
    t.equal(
      out[0]?.message,
      `page 1: Home_1.html is ${DEFAULT_MAX_PAGE_BYTES + 1} bytes, over the ${DEFAULT_MAX_PAGE_BYTES}-byte limit`,
    )
    t.match(
      out[1]?.message,
      /^page 2: too many bytes in the stream\. expected 2048\. got at least \d+$/,
    )
    t.same(
      tree(box.root).filter((p) => p.startsWith('zips/')),
      ['zips/index-bomb.zip', 'zips/page-bomb.zip'],
    )
  },
)

t.test('not a zip, an empty file, a zip cut short: a clear refusal', async (t) => {
  const box = sandbox(t)
  const good = await hostileZip(join(box.zips, 'good.zip'), [
    { name: 'index.html', data: INDEX },
    HOME,
  ])
  const bytes = readFileSync(good)
  const bodies: Array<[string, Buffer, RegExp]> = [
    [
      'html.zip',
      Buffer.from('<html><body>a web page</body></html>'),
      /not a readable zip \(End of central directory record signature not found/,
    ],
    [
      'empty.zip',
      Buffer.alloc(0),
      /not a readable zip \(End of central directory record signature not found/,
    ],
    [
      'half.zip',
      bytes.subarray(0, bytes.length >> 1),
      /not a readable zip \(End of central directory record signature not found/,
    ],
    // Cut inside the end record: the directory it points at is no longer all there.
    ['short-end.zip', bytes.subarray(0, bytes.length - 4), /not a readable zip \(/],
  ]
  for (const [name, body, why] of bodies) {
    const path = join(box.zips, name)
    writeFileSync(path, body)
    await t.rejects(inspectExport(path), { name: 'ExportError', message: why }, name)
  }
})

t.test('the upload route refuses each hostile zip with a 400 and keeps nothing', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const box = sandbox(t)
  const exports = await tempDir(t, 'cnfl-exports-')
  const { url } = await listenTestApp(t, {
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    REDIS_URL: redis.url,
    EXPORTS_DIR: exports,
  })
  const before = tree(box.root)
  const upload = (body: Buffer) =>
    fetch(`${url}/api/sources/export?name=hostile`, {
      method: 'POST',
      headers: { ...bearer(ADMIN_KEY), 'content-type': 'application/zip' },
      body: new Uint8Array(body),
    })
  const scratch = await tempDir(t, 'cnfl-hostile-')
  const build = async (entries: Entry[], rename?: Record<string, string>) =>
    readFileSync(await hostileZip(join(scratch, 'z.zip'), entries, rename))

  const good = await build([{ name: 'index.html', data: INDEX }, HOME])
  const cases: Array<[string, Buffer, RegExp]> = [
    [
      'a ../ entry',
      await build(
        [{ name: 'index.html', data: INDEX }, HOME, { name: 'xx/Evil_3.html', data: 'x' }],
        {
          'xx/Evil_3.html': '../Evil_3.html',
        },
      ),
      /invalid relative path: \.\.\/Evil_3\.html/,
    ],
    [
      'an absolute entry',
      await build([{ name: '_tmp/index.html', data: INDEX }, HOME], {
        '_tmp/index.html': '/tmp/index.html',
      }),
      /absolute path: \/tmp\/index\.html/,
    ],
    [
      'index.html as a symbolic link',
      await build([{ name: 'index.html', data: box.outsideIndex, mode: SYMLINK }, HOME]),
      /index\.html has no space details table/,
    ],
    [
      'an index.html bomb',
      await build([{ name: 'index.html', data: Buffer.alloc(MAX_INDEX_BYTES + 1, 32) }, HOME]),
      /index\.html cannot be read \(index\.html is \d+ bytes, over the \d+-byte limit\)/,
    ],
    [
      'an index.html of a million empty elements (a few KB zipped)',
      await build([{ name: 'index.html', data: INDEX + '<i></i>'.repeat(MAX_INDEX_NODES) }, HOME]),
      new RegExp(`index\\.html holds over ${MAX_INDEX_NODES} nodes`),
    ],
    ['a web page sent as a zip', Buffer.from('<html>not a zip</html>'), /not a readable zip/],
    ['an empty body', Buffer.alloc(0), /not a readable zip/],
    ['a zip cut in half', good.subarray(0, good.length >> 1), /not a readable zip/],
  ]
  for (const [what, body, why] of cases) {
    const res = await upload(body)
    t.equal(res.status, 400, what)
    const answer = (await res.json()) as { error: string; message: string }
    t.match(answer.message, why, `${what}: ${answer.message}`)
    t.same(readdirSync(exports), [], `${what}: nothing kept under EXPORTS_DIR`)
  }
  t.same(tree(box.root), before, 'nothing written next to or outside EXPORTS_DIR')
  // The same app takes a good zip: the refusals above were about the zips.
  const ok = await upload(good)
  t.equal(ok.status, 201)
})

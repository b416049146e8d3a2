import { once } from 'node:events'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import {
  getSource,
  QUEUE_PREFIX,
  QueueName,
  type SourceSpec,
  updateSource,
} from '@confluence-bot/shared'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { inspectExport } from '../../../services/worker/src/confluence/export.ts'
import { ADMIN_KEY, listenTestApp, READER_KEY, tempDir } from '../../helpers/api.ts'
import { buildExportZip, writeZip } from '../../helpers/confluence-export.ts'
import { generatedSpace } from '../../helpers/ingest.ts'
import { startRedis } from '../../helpers/redis.ts'
import { wire } from '../../helpers/wire.ts'

// PUT /api/sources/:id/export takes a newer export of the space its source holds, never another
// space's: that would leave two spaces' pages under one source and lose the old zip. The space
// key is read from the zip before it replaces anything (a 409 naming both keys); a source that
// has not synced yet names no space, and takes any export (as `cnfl ingest --export` does).

const auth = { authorization: `Bearer ${ADMIN_KEY}` }

/** A Confluence-made export of `spaceKey` (files at the root, or under `KEY/`). */
async function exportOf(t: Test, spaceKey: string, topFolder = false): Promise<Buffer> {
  const dir = await tempDir(t, 'cnfl-zip-')
  const zip = await buildExportZip(generatedSpace(2, spaceKey), {
    spaceKey,
    spaceName: `Space ${spaceKey}`,
    path: join(dir, 'space.zip'),
    topFolder,
  })
  return readFile(zip.path)
}

/** A zip of these files (name → content), for index.html shapes the builder does not write. */
async function zipOf(t: Test, entries: Record<string, string>): Promise<Buffer> {
  const path = join(await tempDir(t, 'cnfl-zip-'), 'custom.zip')
  await writeZip(path, Object.entries(entries))
  return readFile(path)
}

/** A zip whose directory reads, but whose index.html does not inflate. */
async function damaged(t: Test): Promise<Buffer> {
  const zip = await zipOf(t, {
    'index.html': details('<tr><th>Key</th><td>ENG</td></tr>').repeat(50),
  })
  // The local header (30 bytes and the name) comes first; the deflated bytes follow it.
  const data = 30 + 'index.html'.length
  for (let i = data; i < data + 16; i++) zip[i] = 0xff
  return zip
}

const details = (rows: string) =>
  `<html><body><div class="pageSection"><table class="confluenceTable">${rows}</table></div></body></html>`

/** An api on a real socket with its own Redis and exports folder, both keys configured. */
async function exportApi(t: Test, env: Record<string, string> = {}) {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const exports = await tempDir(t, 'cnfl-exports-')
  const { url } = await listenTestApp(t, {
    API_KEYS: READER_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    REDIS_URL: redis.url,
    EXPORTS_DIR: exports,
    ...env,
  })
  return { redis, exports, url }
}

t.test('an export of another space does not replace a source’s zip', async (t) => {
  const { redis, exports, url } = await exportApi(t, {
    EXPORT_UPLOAD_LIMIT: String(4 * 1024 * 1024),
  })
  const client = new Redis(redis.url, { maxRetriesPerRequest: null })
  t.teardown(() => client.quit())
  const queue = new Queue(QueueName.sync, { connection: client, prefix: QUEUE_PREFIX })
  t.teardown(() => queue.close())

  const send = (path: string, method: string, body: Buffer) =>
    wire(`${url}${path}`, {
      method,
      headers: { ...auth, 'content-type': 'application/zip' },
      body,
      deadlineMs: 20_000,
    })
  const eng = await exportOf(t, 'ENG')
  const created = await send('/api/sources/export?name=Offline', 'POST', eng)
  t.equal(created.status, 201, created.text)
  const id = (created.json as { id: string }).id
  const replace = (body: Buffer) => send(`/api/sources/${id}/export`, 'PUT', body)
  const zipOnDisk = () => readFile(join(exports, `${id}.zip`))
  const jobs = async () => (await queue.getJobs()).length

  // The upload named its space at once, read from the zip.
  t.same((await getSource(client, id))?.spaces, ['ENG'])
  // A source that names no space (registered by an older version before its first sync) takes
  // any export.
  await updateSource(client, { ...((await getSource(client, id)) as SourceSpec), spaces: [] })
  const ops = await exportOf(t, 'OPS')
  const unsynced = await replace(ops)
  t.equal(unsynced.status, 202, unsynced.text)
  t.same(await zipOnDisk(), ops, 'a source that names no space takes any export')

  // Its first sync named the space (as the worker does), and the queue is empty again.
  const spec = await getSource(client, id)
  await updateSource(client, { ...(spec as SourceSpec), spaces: ['OPS'] })
  await queue.drain()
  t.equal(await jobs(), 0)

  const other = await replace(eng)
  t.match(other, {
    status: 409,
    type: /^application\/json/,
    json: {
      error: 'invalid_export',
      statusCode: 409,
      message: new RegExp(`space ENG.*source ${id} holds the space\\(s\\) OPS`),
    },
  })
  t.same(await zipOnDisk(), ops, 'the old zip is intact')
  t.same(await readdir(exports), [`${id}.zip`], 'and nothing else is left behind')
  t.equal(await jobs(), 0, 'no sync was queued')
  t.same((await getSource(client, id))?.spaces, ['OPS'], 'the source still holds its space')

  const newer = await exportOf(t, 'OPS', true)
  const same = await replace(newer)
  t.equal(same.status, 202, same.text)
  t.same(await zipOnDisk(), newer, 'a newer export of the same space replaces it')
  await queue.drain()

  // index.html as the worker reads it: the "Key" row, else the first row (another language),
  // else the top folder's name; the root index.html wins over a folder's.
  const refused = {
    'a Key row after the Name row': await zipOf(t, {
      'index.html': details('<tr><th>Name</th><td>x</td></tr><tr><th> Key: </th><td>ENG</td></tr>'),
    }),
    'the first row in another language': await zipOf(t, {
      'index.html': details('<tr><th>Schlüssel</th><td class="confluenceTd"> ENG </td></tr>'),
    }),
    'an empty key under the folder ENG/': await zipOf(t, {
      'ENG/index.html': details('<tr><th>Key</th><td></td></tr>'),
    }),
    'a first row with no label': await zipOf(t, {
      'index.html': details('<tr><td>ENG</td></tr><tr><th>Name</th><td>OPS</td></tr>'),
    }),
    'a Key row with no value under the folder ENG/': await zipOf(t, {
      'ENG/index.html': details('<tr><th>Key</th></tr>'),
    }),
    'a details table with no rows under the folder ENG/': await zipOf(t, {
      'ENG/index.html': details(''),
      'ENG/styles/site.css': 'body {}',
      'ENG/sub/index.html': 'a page, not the space’s index',
    }),
    'a root index.html next to a folder’s': await zipOf(t, {
      'OPS/index.html': details('<tr><th>Key</th><td>OPS</td></tr>'),
      'index.html': details(
        '<!-- <table><tr><th>Key</th><td>OPS</td></tr> --><tr><th>Key</th><td>ENG</td></tr>',
      ),
    }),
    // Markup that only looks like a table to a pattern (found by review): a parser reads ENG.
    'a table of OPS inside a script': await zipOf(t, {
      'index.html': `<html><head><script>"<table><tr><th>Key</th><td>OPS</td></tr></table>"</script></head>${details('<tr><th>Key</th><td>ENG</td></tr>').slice(6)}`,
    }),
    'a table of OPS inside a style and the title': await zipOf(t, {
      'index.html': `<html><head><title><table><tr><th>Key</th><td>OPS</td></tr></table></title><style>/* <table><tr><th>Key</th><td>OPS</td></tr></table> */</style></head>${details('<tr><th>Key</th><td>ENG</td></tr>').slice(6)}`,
    }),
    'a table of OPS inside an attribute': await zipOf(t, {
      'index.html': details('<tr><th>Key</th><td>ENG</td></tr>').replace(
        '<div class="pageSection">',
        '<div class="pageSection" title="<table><tr><th>Key</th><td>OPS</td></tr></table>">',
      ),
    }),
    'an entity-encoded key': await zipOf(t, {
      'index.html': details('<tr><th>Key</th><td>&#69;N&#x47;&nbsp;</td></tr>'),
    }),
    'a nested table in a row before the Key row': await zipOf(t, {
      'index.html': details(
        '<tr><th>Name</th><td><table><tr><td>x</td></tr></table></td></tr><tr><th>Key</th><td>ENG</td></tr>',
      ),
    }),
    'a details table followed by megabytes of pages': await zipOf(t, {
      'index.html': details('<tr><th>Key</th><td>ENG</td></tr>') + ' '.repeat(3 * 1024 * 1024),
    }),
  }
  // The worker, which names the source's space when it syncs, reads these zips the same way.
  const scratch = join(await tempDir(t, 'cnfl-zip-'), 'check.zip')
  const workerReads = async (zip: Buffer) => {
    await writeFile(scratch, zip)
    return inspectExport(scratch).then(
      (info) => info.spaceKey,
      (err: Error) => err.message,
    )
  }
  for (const [what, zip] of Object.entries(refused)) {
    t.equal(await workerReads(zip), 'ENG', `the worker reads ENG too: ${what}`)
    const answer = await replace(zip)
    t.match(
      answer,
      { status: 409, json: { error: 'invalid_export', message: /space ENG.*OPS/ } },
      what,
    )
  }
  const invalid = {
    'index.html nested a million levels deep (a kilobyte zipped)': [
      await zipOf(t, {
        'index.html': details('<tr><th>Key</th><td>OPS</td></tr>') + '<b>'.repeat(1_000_000),
      }),
      /index\.html nests elements over 1000 levels deep/,
    ],
    'no details table': [
      await zipOf(t, { 'ENG/index.html': '<html><body>no table</body></html>' }),
      /has no space details table/,
    ],
    'an empty key and no folder': [
      await zipOf(t, { 'index.html': details('<tr><th>Key</th><td> </td></tr>') }),
      /names no space key/,
    ],
    'an index.html over 64 MiB': [
      await zipOf(t, { 'index.html': ' '.repeat(64 * 1024 * 1024 + 1) }),
      /index\.html is 67108865 bytes, over the 67108864-byte limit/,
    ],
    'an index.html whose bytes are damaged': [await damaged(t), /index\.html cannot be read/],
    'several space folders': [
      await zipOf(t, {
        'OPS/index.html': details('<tr><th>Key</th><td>OPS</td></tr>'),
        'ENG/index.html': details('<tr><th>Key</th><td>ENG</td></tr>'),
      }),
      /several space folders \(OPS, ENG\)/,
    ],
  } as const
  for (const [what, [zip, message]] of Object.entries(invalid)) {
    t.match(
      await workerReads(zip),
      /is not a Confluence HTML space export/,
      `the worker refuses it too: ${what}`,
    )
    const answer = await replace(zip)
    t.match(answer, { status: 400, json: { error: 'invalid_export', message } }, what)
  }
  // A zip of the space that holds no page: the worker would read it as a space emptied, and the
  // sync would delete every page (or its delete guard refuse for ever): refused on upload.
  const empty = {
    'no page files': [
      await zipOf(t, { 'OPS/index.html': details('<tr><th>Key</th><td>OPS</td></tr>') }),
      /holds no page files/,
    ],
    'a root index.html of no pages beside a real export in a folder': [
      await zipOf(t, {
        'index.html': details('<tr><th>Key</th><td>OPS</td></tr>'),
        'NEW/index.html': details('<tr><th>Key</th><td>NEW</td></tr>'),
        'NEW/Home_1.html': '<html><body><div id="main-content">Home</div></body></html>',
      }),
      /holds no page files/,
    ],
  } as const
  for (const [what, [zip, message]] of Object.entries(empty)) {
    const answer = await replace(zip)
    t.match(answer, { status: 400, json: { error: 'invalid_export', message } }, what)
  }
  t.same(await zipOnDisk(), newer, 'no refused zip replaced the old one')
  t.same(await readdir(exports), [`${id}.zip`])
  t.equal(await jobs(), 0, 'and none queued a sync')
})

t.test('an upload cut off mid-body leaves nothing behind', async (t) => {
  const { exports, url } = await exportApi(t)
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  await once(socket, 'connect')
  socket.write(
    [
      'POST /api/sources/export?name=Cut HTTP/1.1',
      `Host: ${hostname}:${port}`,
      `Authorization: Bearer ${ADMIN_KEY}`,
      'Content-Type: application/zip',
      'Content-Length: 1000000',
      '',
      '',
    ].join('\r\n'),
  )
  socket.write(Buffer.alloc(64 * 1024, 1))
  // Once the partial file holds the first bytes, the client goes away.
  for (let i = 0; i < 200 && (await readdir(exports)).length === 0; i++) {
    await new Promise((r) => setTimeout(r, 25))
  }
  socket.destroy()
  for (let i = 0; i < 200 && (await readdir(exports)).length > 0; i++) {
    await new Promise((r) => setTimeout(r, 25))
  }
  t.same(await readdir(exports), [], 'no partial file is left')
  const listed = await wire(`${url}/api/sources`, { headers: auth })
  t.same(listed.json, { sources: [] }, 'and no source was registered')
})

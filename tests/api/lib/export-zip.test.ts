import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { checkExportZip } from '../../../services/api/src/lib/export-zip.ts'
import { tempDir } from '../../helpers/api.ts'
import { writeZip } from '../../helpers/confluence-export.ts'

// The upload route's first look at a zip: readable, with an index.html where exports put it.

t.test('an export zip with index.html at the root or one folder down passes', async (t) => {
  const dir = await tempDir(t)
  for (const name of ['index.html', 'ENG/index.html']) {
    const path = join(dir, `${name.replace('/', '-')}.zip`)
    await writeZip(path, [
      [name, '<html></html>'],
      ['ENG/Page_1.html', '<html></html>'],
    ])
    t.same(await checkExportZip(path), { entries: 2 }, name)
  }
  const deep = join(dir, 'deep.zip')
  await writeZip(deep, [['a/b/index.html', 'x']])
  await t.rejects(checkExportZip(deep), /no index.html/)
})

t.test('a zip whose directory is damaged is refused as unreadable', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'broken.zip')
  await writeZip(path, [
    ['index.html', '<html></html>'],
    ['b.html', 'b'],
  ])
  const bytes = await readFile(path)
  // The second central directory entry loses its signature; the end record stays valid.
  const second = bytes.indexOf(
    Buffer.from([0x50, 0x4b, 0x01, 0x02]),
    bytes.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02])) + 4,
  )
  bytes.writeUInt32LE(0, second)
  await writeFile(path, bytes)
  await t.rejects(checkExportZip(path), /not a readable zip/)
})

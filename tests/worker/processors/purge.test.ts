import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { WorkerConfig } from '@confluence-bot/shared'
import { type Job, UnrecoverableError } from 'bullmq'
import { pino } from 'pino'
import t from 'tap'
import type { Ingest } from '../../../services/worker/src/ingest/context.ts'
import { createPurgeProcessor, exportFile } from '../../../services/worker/src/processors/purge.ts'
import { tempDir } from '../../helpers/api.ts'

// The purge processor deletes a file: it checks the name again where it deletes, even when it
// is called without the worker's schema check in front of it.

t.test('an export file is a bare name inside EXPORTS_DIR', async (t) => {
  t.equal(
    exportFile('/data/exports/', 'src_0123456789ab.zip'),
    '/data/exports/src_0123456789ab.zip',
  )
  t.equal(exportFile('/data/exports', 'a..zip'), '/data/exports/a..zip')
  for (const name of [
    '../victim.txt',
    '..',
    '.',
    '',
    'sub/x.zip',
    '/etc/passwd',
    '../exports/x.zip',
  ]) {
    t.throws(() => exportFile('/data/exports', name), UnrecoverableError, JSON.stringify(name))
  }
  t.throws(() => exportFile('/data/exports', '../victim.txt'), {
    message:
      'purge job data is invalid: export_path "../victim.txt" is not a file name in EXPORTS_DIR',
  })
})

t.test('a purge with a path out of EXPORTS_DIR touches nothing', async (t) => {
  const root = await tempDir(t)
  const exports = join(root, 'exports')
  await mkdir(exports)
  const victim = join(root, 'victim.txt')
  await writeFile(victim, 'keep me')
  const deleted: string[] = []
  const ingest = {
    config: { EXPORTS_DIR: exports } as WorkerConfig,
    store: {
      deleteSource: async (id: string) => {
        deleted.push(id)
        return 0
      },
    },
  } as unknown as Ingest
  const purge = createPurgeProcessor(ingest)
  const job = { data: { source_id: 'src_000000000000', export_path: '../victim.txt' } } as Job
  await t.rejects(purge(job, { log: pino({ level: 'silent' }), config: ingest.config }), {
    name: 'UnrecoverableError',
    message: /export_path "\.\.\/victim\.txt" is not a file name in EXPORTS_DIR/,
  })
  t.ok(existsSync(victim), 'the file outside EXPORTS_DIR survives')
  t.same(deleted, [], 'nothing was purged')
})

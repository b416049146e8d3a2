import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, statfsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import {
  generatedSpace,
  ingestRig,
  type Rig,
  sameAsFromScratch,
  syncFromScratch,
} from '../helpers/ingest.ts'
import { LONG, workerProcess } from './faults.ts'

// Issue 13, fault 5: the LanceDB directory on a small tmpfs, made read-only, then full, while a
// worker process syncs changed pages into it. The failed job says what is wrong ("read-only",
// "no space left"), so does the worker's readiness; the index written before the fault stays
// readable and whole (each page has its old rows or its new ones, never a mix or a part); once
// the storage heals, the next sync converges to the index a sync from scratch builds.
// Needs `mount` (root on Linux): skipped with the reason where it is refused.

const PAGES = LONG ? 200 : 24
/** Free space left when the index is "full": about half of what the changed pages need. */
const LEFT_BYTES = 112 * 1024

type Row = Record<string, unknown>

/** Rows by page, each page's rows in chunk order. */
const byPage = (rows: Row[]) => {
  const pages = new Map<string, Row[]>()
  for (const row of rows) {
    const id = String(row.page_id)
    pages.set(id, [...(pages.get(id) ?? []), row])
  }
  return pages
}

function mountTmpfs(dir: string): string | undefined {
  mkdirSync(dir, { recursive: true })
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', dir], { stdio: 'pipe' })
    return undefined
  } catch (err) {
    return String((err as { stderr?: Buffer }).stderr ?? err).trim()
  }
}

/** Edits every third page (a new version, other text) and adds two: the next sync writes. */
function change(rig: Rig, round: number) {
  const pages = rig.confluence.options.pages
  pages.forEach((page, i) => {
    if (i % 3 !== round % 3) return
    page.version++
    page.storage += `<p>Revised in round ${round}: ${'more words '.repeat(20)}</p>`
  })
  const next = 1001 + pages.length
  for (const id of [next, next + 1]) {
    pages.push({ ...(pages[0] as (typeof pages)[number]), id: String(id), parentId: '1001' })
  }
}

async function workerReadiness(port: number) {
  const res = await fetch(`http://127.0.0.1:${port}/health/ready`)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

/** Why a tmpfs cannot be mounted here (not root, no CAP_SYS_ADMIN, not Linux), or undefined. */
function mountRefused(): string | undefined {
  const probe = mkdtempSync(join(tmpdir(), 'cnfl-mount-'))
  const refused = mountTmpfs(probe)
  if (refused === undefined) execFileSync('umount', [probe])
  rmSync(probe, { recursive: true, force: true })
  return refused
}

const refused = mountRefused()
const skip =
  refused === undefined
    ? false
    : `cannot mount a tmpfs for the index (${refused}): needs root on Linux`

t.test(
  'a read-only, then full, index directory: clear errors, nothing half-written',
  { skip },
  async (t) => {
    const rig = await ingestRig(t, {
      pages: generatedSpace(PAGES),
      env: { SYNC_BATCH_PAGES: '2' },
    })
    const failed = mountTmpfs(rig.lancedbUri)
    if (failed !== undefined) throw new Error(failed)
    t.teardown(() => execFileSync('umount', ['-l', rig.lancedbUri]))
    const worker = workerProcess(t, rig, { WORKER_HEALTH_PORT: '0' })
    const started = await worker.waitFor(/worker started/, 30_000)
    const healthPort = Number(/"healthPort":(\d+)/.exec(started)?.[1])
    const source = await rig.register()
    const first = await rig.waitFor(await rig.enqueue(source), 60_000)
    t.equal(first.state, 'completed', first.failedReason ?? '')
    const before = await rig.rows()
    t.equal(byPage(before).size, PAGES)
    const during: Row[][] = []

    t.test('read-only', async (t) => {
      execFileSync('mount', ['-o', 'remount,ro', rig.lancedbUri])
      change(rig, 1)
      const run = await rig.waitFor(await rig.enqueue(source), 60_000)
      t.equal(run.state, 'failed', 'the sync fails')
      t.match(run.failedReason, /read-only/i, `it says why: ${run.failedReason}`)
      const ready = await workerReadiness(healthPort)
      t.equal(ready.status, 503)
      t.match(JSON.stringify(ready.body), /read-only/i, 'so does the worker readiness')
      const rows = await rig.rows()
      t.same(rows, before, 'the index is as it was, and readable')
      during.push(rows)
      execFileSync('mount', ['-o', 'remount,rw', rig.lancedbUri])
    })

    t.test('full', async (t) => {
      change(rig, 2)
      // All but LEFT_BYTES taken: the sync's first writes may fit, then it runs out.
      const { bavail, bsize } = statfsSync(rig.lancedbUri)
      const blocks = Math.floor((bavail * bsize - LEFT_BYTES) / 65536)
      execFileSync('dd', [
        'if=/dev/zero',
        `of=${join(rig.lancedbUri, 'filler')}`,
        'bs=64k',
        `count=${blocks}`,
      ])
      const run = await rig.waitFor(await rig.enqueue(source), 60_000)
      t.equal(run.state, 'failed', 'the sync fails')
      t.match(run.failedReason, /no space left/i, `it says why: ${run.failedReason}`)
      const ready = await workerReadiness(healthPort)
      t.equal(ready.status, 503)
      t.match(JSON.stringify(ready.body), /no space left/i, 'so does the worker readiness')
      const rows = await rig.rows()
      const old = byPage(before)
      const rewritten = [...byPage(rows)].filter(
        ([page, chunks]) => JSON.stringify(old.get(page)) !== JSON.stringify(chunks),
      )
      t.comment(`${rewritten.length} pages written before the space ran out`)
      during.push(rows)
      await writeFile(join(rig.lancedbUri, 'filler'), '')
    })

    t.test('healed: the next sync converges', async (t) => {
      const run = await rig.waitFor(await rig.enqueue(source), 60_000)
      t.equal(run.state, 'completed', run.failedReason ?? '')
      const ready = await workerReadiness(healthPort)
      t.equal(ready.status, 200, 'the worker is ready again')
      const scratch = await syncFromScratch(t, rig)
      await sameAsFromScratch(t, rig, source, scratch)
      const after = byPage((await rig.rows()).filter((r) => r.source_id === source))
      const old = byPage(before)
      const broken = during.flatMap((rows) =>
        [...byPage(rows)]
          .filter(([page, chunks]) =>
            [old.get(page), after.get(page)].every(
              (known) => JSON.stringify(known) !== JSON.stringify(chunks),
            ),
          )
          .map(([page]) => page),
      )
      t.same(broken, [], 'during the faults each page had its old rows or its new ones, whole')
    })

    t.teardown(() => worker.child.kill('SIGKILL'))
  },
)

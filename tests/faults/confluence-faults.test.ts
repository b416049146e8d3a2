import t from 'tap'
import type { StandInFault } from '../helpers/confluence-stand-in.ts'
import { generatedSpace, ingestRig, sameAsFromScratch, syncFromScratch } from '../helpers/ingest.ts'
import { enqueueAsApi, LONG, seeded, workerProcess } from './faults.ts'

// Issue 13, fault 4: Confluence answering 429 (with Retry-After), 500, or not at all (longer than
// CONFLUENCE_TIMEOUT_MS) on requests picked from a printed seed, during a sync run by a worker
// process. The Retry-After is sat out, a hung request times out and is retried, a 500 is retried
// (by the client, then by the job's backoff), and the sync completes with the index a fault-free
// sync builds. FAULTS_LONG=1: more pages and faults.

const PAGES = LONG ? 200 : 20
const EACH = LONG ? 6 : 2
const TIMEOUT_MS = 600
const RETRY_AFTER_S = 1

t.test('429s, 500s and hung requests from Confluence: the sync completes', async (t) => {
  const random = seeded(t, 'confluence faults')
  const kinds: StandInFault[] = [
    { status: 429, headers: { 'retry-after': String(RETRY_AFTER_S) } },
    { status: 500 },
    { kind: 'hang' },
  ]
  // Which requests (by arrival order, among the first few dozen) get which fault.
  const plan = new Map<number, StandInFault>()
  // (A clean sync of the short space asks 12 requests, of the long one over 100.)
  const span = LONG ? 100 : 14
  for (const fault of kinds) {
    for (let n = 0; n < EACH; n++) {
      let at: number
      do at = 1 + Math.floor(random() * span)
      while (plan.has(at))
      plan.set(at, fault)
    }
  }
  t.comment(`faults at requests ${[...plan.keys()].sort((a, b) => a - b).join(', ')}`)
  let faulty = true
  const given: Array<{ target: string; at: number; fault: StandInFault }> = []
  const rig = await ingestRig(t, {
    pages: generatedSpace(PAGES),
    confluence: {
      onRequest(request) {
        const fault = plan.get(rig.confluence.requests.length)
        if (!faulty || fault === undefined) return
        const target = `${request.path}?${new URLSearchParams(request.query)}`
        given.push({ target, at: request.at, fault })
        rig.confluence.options.faults.push({ ...fault })
      },
    },
    env: { CONFLUENCE_TIMEOUT_MS: String(TIMEOUT_MS), SYNC_BATCH_PAGES: '4' },
  })
  const worker = workerProcess(t, rig)
  await worker.waitFor(/worker started/, 30_000)
  const source = await rig.register()
  const run = await rig.waitFor(await enqueueAsApi(t, rig, source), LONG ? 300_000 : 60_000)
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.equal(run.progress.failed, 0, 'no page given up on')
  t.comment(`${rig.confluence.requests.length} requests`)
  t.equal(given.length, plan.size, 'every planned fault was served')

  // What came after each fault: the same request again, after the wait the fault called for.
  const requests = rig.confluence.requests.map((r) => ({
    target: `${r.path}?${new URLSearchParams(r.query)}`,
    at: r.at,
  }))
  // A page batch that keeps failing is given up as a batch once its attempts are spent, and its
  // pages are then fetched one by one: that, too, is asking again.
  const onePageOf = (target: string) => {
    const ids = /\/pages\?id=([0-9%C]+)/.exec(target)?.[1]
    return ids === undefined ? undefined : `/pages/${decodeURIComponent(ids).split(',')[0]}?`
  }
  for (const { target, at, fault } of given) {
    const retry = requests.find((r) => r.target === target && r.at > at)
    const single = onePageOf(target)
    const fallback = single && requests.find((r) => r.target.includes(single) && r.at > at)
    const what = `${target} was asked again after its ${fault.status ?? fault.kind}`
    if (!t.ok(retry ?? fallback, what)) continue
    if (retry === undefined) continue
    const waited = retry.at - at
    if (fault.status === 429) {
      t.ok(waited >= RETRY_AFTER_S * 1000 - 20, `Retry-After honoured (${Math.round(waited)} ms)`)
    } else if (fault.kind === 'hang') {
      t.ok(waited >= TIMEOUT_MS - 20, `the hung request timed out (${Math.round(waited)} ms)`)
    }
  }

  faulty = false
  const scratch = await syncFromScratch(t, rig)
  await sameAsFromScratch(t, rig, source, scratch)
  worker.child.kill('SIGTERM')
  t.equal((await worker.exit).code, 0)
})

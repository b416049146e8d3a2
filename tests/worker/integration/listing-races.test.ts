import t from 'tap'
import type { ConfluenceRecordedRequest } from '../../helpers/confluence-stand-in.ts'
import { generatedSpace, ingestRig, type Rig } from '../../helpers/ingest.ts'

// Listings that change under the walk, end to end (real Redis, workers and LanceDB): a page
// deleted between two Data Center offset requests, and Cloud v2 cursor pages that overlap. The
// index must end up holding exactly the space's live pages, and a sync after that changes nothing.

const pageIds = (rows: Array<Record<string, unknown>>) =>
  [...new Set(rows.map((r) => String(r.page_id)))].sort()

const liveIds = (rig: Rig) => rig.confluence.options.pages.map((p) => p.id).sort()

/** Runs `change` once, as the nth request matching `path` arrives (before it is answered). */
function onNth(
  rig: Rig,
  path: RegExp,
  n: number,
  change: (request: ConfluenceRecordedRequest) => void,
) {
  let count = 0
  rig.confluence.options.onRequest = (request) => {
    if (path.test(request.path) && ++count === n) change(request)
  }
}

t.test(
  'DC: a page deleted while the offset listing walks keeps every live page and drops the deleted one',
  async (t) => {
    const pages = generatedSpace(43)
    const rig = await ingestRig(t, {
      pages,
      confluence: { deployment: 'dc', contextPath: '/confluence', clampLimit: 10 },
    })
    await rig.startWorker()
    const source = await rig.register()
    const first = await rig.waitFor(await rig.enqueue(source))
    t.equal(first.state, 'completed', first.failedReason ?? '')
    t.same(pageIds(await rig.rows()), liveIds(rig))

    // Page 1003 sits on the first offset page: deleting it as the second one is asked for
    // shifts every later page one place towards the start.
    let second: ConfluenceRecordedRequest | undefined
    onNth(rig, /\/rest\/api\/content$/, 2, (request) => {
      second = request
      const at = rig.confluence.options.pages.findIndex((p) => p.id === '1003')
      rig.confluence.options.pages.splice(at, 1)
    })
    const raced = await rig.waitFor(await rig.enqueue(source))
    t.equal(raced.state, 'completed', raced.failedReason ?? '')
    t.ok(second, 'the page was deleted mid-walk')
    t.notOk(second?.query.start === '0', 'between two requests of one walk')
    t.same(pageIds(await rig.rows()), liveIds(rig), 'every live page, and only those')
    t.match(raced.progress, { discovered: 42, converted: 0, unchanged: 42, deleted: 1, failed: 0 })

    rig.confluence.options.onRequest = undefined
    const again = await rig.waitFor(await rig.enqueue(source))
    t.equal(again.progress.unchanged, 42, 'a sync after the race changes nothing')
    t.equal(again.progress.deleted, 0)
    t.same(pageIds(await rig.rows()), liveIds(rig))
  },
)

t.test(
  'Cloud: overlapping v2 cursor pages list each page once and index all of them',
  async (t) => {
    const pages = generatedSpace(43)
    // Batches of 25 pages: a repeated page lands in the same batch as its first listing.
    const rig = await ingestRig(t, {
      pages,
      confluence: { clampLimit: 10, cursorOverlap: 2 },
      env: { SYNC_BATCH_PAGES: '25' },
    })
    await rig.startWorker()
    const source = await rig.register()
    const run = await rig.waitFor(await rig.enqueue(source))
    t.equal(run.state, 'completed', run.failedReason ?? '')
    t.same(run.progress, {
      discovered: 43,
      converted: 43,
      embedded: 43,
      unchanged: 0,
      deleted: 0,
      failed: 0,
    })
    t.same(run.errors, [])
    const rows = await rig.rows()
    t.same(pageIds(rows), liveIds(rig))
    t.equal(new Set(rows.map((r) => r.chunk_id)).size, rows.length, 'no duplicate chunk')
    const listings = rig.confluence.requests.filter((r) => /\/spaces\/\d+\/pages$/.test(r.path))
    t.ok(listings.length > 5, 'the overlap made the walk longer: it really repeated pages')
  },
)

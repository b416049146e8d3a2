import t from 'tap'
import type { StandInPage } from '../../helpers/confluence-stand-in.ts'
import { ingestRig } from '../../helpers/ingest.ts'

// The `embedded` counter counts pages, once per run, however many writes their vectors took:
// a page whose chunks span two batches of the finish step's vector fill (256 chunks each) is one
// page, and a run never reports more pages embedded than it discovered.

/** TODO marker while the sync's finish step still counts each fill batch's pages on its own. */

const page: StandInPage = {
  id: '3001',
  title: 'Long page',
  spaceKey: 'ENG',
  version: 1,
  storage: Array.from(
    { length: 300 },
    (_, i) =>
      `<h2>Part ${i}</h2><p>${Array.from({ length: 120 }, (_, j) => `w${j}`).join(' ')}</p>`,
  ).join(''),
}

t.test('a page filled in two vector batches counts once', async (t) => {
  const rig = await ingestRig(t, { pages: [page] })
  const models = rig.ollama.options.models
  // First sync: no embedding model, the chunks are stored without vectors.
  rig.ollama.options.models = models.filter((m) => !m.name.startsWith('nomic-embed-text'))
  await rig.startWorker()
  const source = await rig.register()
  const first = await rig.waitFor(await rig.enqueue(source))
  t.equal(first.state, 'completed', first.failedReason ?? '')
  t.match(first.progress, { discovered: 1, converted: 1, embedded: 0 })
  const rows = await rig.rows()
  t.ok(rows.length > 256, `the page has ${rows.length} chunks, more than one fill batch`)

  // The model is back: the next sync fills every chunk's vector in two batches.
  rig.ollama.options.models = models
  const second = await rig.waitFor(await rig.enqueue(source))
  t.equal(second.state, 'completed', second.failedReason ?? '')
  t.ok(
    (await rig.rows()).every((r) => Array.isArray(r.vector)),
    'every chunk has a vector',
  )
  t.match(second.progress, { discovered: 1, unchanged: 1 })
  t.equal(second.progress.embedded, 1, 'one page embedded')
})

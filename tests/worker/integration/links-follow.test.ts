import t from 'tap'
import type { StandInPage } from '../../helpers/confluence-stand-in.ts'
import {
  generatedSpace,
  ingestRig,
  sameAsFromScratch,
  syncFromScratch,
} from '../../helpers/ingest.ts'

// A page's text holds what its links resolved to when it was converted: the URL of the page a
// title names, or a title-only link when no such page was listed. When the linked page is created,
// renamed or deleted later, the linking page's own version does not change, yet a from-scratch
// sync would convert it differently: an incremental sync converts it again too. Real Redis, real
// workers, real LanceDB; the stand-in changes between syncs.

const link = (title: string) =>
  `<ac:link><ri:page ri:content-title="${title}" /><ac:plain-text-link-body><![CDATA[${title}]]></ac:plain-text-link-body></ac:link>`

t.test(
  'a linking page follows the page it links to being created, renamed and deleted',
  async (t) => {
    const pages: StandInPage[] = generatedSpace(4)
    const linking: StandInPage = {
      id: '2001',
      title: 'Linking page',
      spaceKey: 'ENG',
      version: 1,
      storage: `<p>See ${link('Future page')} and ${link('Page 1 of ENG')}.</p>`,
    }
    pages.push(linking)
    const rig = await ingestRig(t, { pages })
    await rig.startWorker()
    const source = await rig.register()
    const textOf = async (id: string) =>
      (await rig.rows())
        .filter((r) => r.source_id === source && r.page_id === id)
        .map((r) => String(r.text))
        .join('\n')

    const first = await rig.waitFor(await rig.enqueue(source))
    t.equal(first.state, 'completed', first.failedReason ?? '')
    t.notMatch(await textOf('2001'), /pages\/3001/, 'nothing to link to yet')

    // The page it names is created: the linking page (same version) links to it.
    pages.push({
      id: '3001',
      title: 'Future page',
      spaceKey: 'ENG',
      version: 1,
      storage: '<p>Here.</p>',
    })
    const created = await rig.waitFor(await rig.enqueue(source))
    t.equal(created.state, 'completed', created.failedReason ?? '')
    t.match(
      created.progress,
      { converted: 2, unchanged: 4 },
      'the new page and the one linking to it',
    )
    t.match(await textOf('2001'), /pages\/3001/)
    await sameAsFromScratch(t, rig, source, await syncFromScratch(t, rig))

    // The linked page is renamed (its version bumps): the title-only link no longer resolves.
    Object.assign(pages.find((p) => p.id === '3001') as StandInPage, {
      title: 'Renamed',
      version: 2,
    })
    const renamed = await rig.waitFor(await rig.enqueue(source))
    t.match(renamed.progress, { converted: 2, unchanged: 4 })
    t.notMatch(await textOf('2001'), /pages\/3001/)

    // The other linked page is deleted.
    pages.splice(
      pages.findIndex((p) => p.title === 'Page 1 of ENG'),
      1,
    )
    const deleted = await rig.waitFor(await rig.enqueue(source))
    t.match(deleted.progress, { converted: 1, unchanged: 4, deleted: 1 })
    await sameAsFromScratch(t, rig, source, await syncFromScratch(t, rig))

    // Nothing changed: nothing converted.
    const again = await rig.waitFor(await rig.enqueue(source))
    t.match(again.progress, { converted: 0, unchanged: 5 })
  },
)

import t from 'tap'
import { ingestRig } from '../../helpers/ingest.ts'

// Anchor links of a synced page point at the ids its own site gives headings: Data Center names
// them `<page title>-<heading>` (whitespace removed), Cloud `<heading with - for spaces>`, the
// same rule the chunks' section URLs follow (issue 10, item 9).

const pages = (spaceKey: string) => [
  {
    id: '501',
    title: 'Release Notes',
    spaceKey,
    version: 1,
    storage:
      '<p>Read <ac:link ac:anchor="install"><ac:plain-text-link-body><![CDATA[the install steps]]></ac:plain-text-link-body></ac:link> ' +
      'and <ac:link ac:anchor="Roll back"><ri:page ri:content-title="Deploy Guide" /><ac:link-body>how to roll back</ac:link-body></ac:link>.</p>' +
      '<h2>Getting Started</h2><p>Start here.</p>',
  },
  {
    id: '502',
    title: 'Deploy Guide',
    spaceKey,
    version: 1,
    storage: '<h2>Roll back</h2><p>Undo the deploy.</p>',
  },
]

for (const deployment of ['dc', 'cloud'] as const) {
  t.test(`a ${deployment} sync writes the anchors of its deployment`, async (t) => {
    const rig = await ingestRig(t, { pages: pages('OPS'), confluence: { deployment } })
    await rig.startWorker()
    const id = await rig.register()
    const done = await rig.waitFor(await rig.enqueue(id))
    t.match(done, { state: 'completed', progress: { converted: 2, failed: 0 } })
    const rows = await rig.rows()
    const notes = rows.filter((r) => r.page_id === '501')
    const text = notes.map((r) => r.text).join('\n')
    const guide = rows.find((r) => r.page_id === '502')
    if (deployment === 'dc') {
      t.match(text, '[the install steps](#ReleaseNotes-install)')
      t.match(text, /\[how to roll back\]\(\S+#DeployGuide-Rollback\)/)
      t.match(guide?.url, /#DeployGuide-Rollback$/, 'the section URL names the same id')
    } else {
      t.match(text, '[the install steps](#install)')
      t.match(text, /\[how to roll back\]\(\S+#Roll-back\)/)
      t.match(guide?.url, /#Roll-back$/, 'the section URL names the same id')
    }
  })
}

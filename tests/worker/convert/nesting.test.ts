import t from 'tap'
import { convertStorage } from '../../../services/worker/src/convert/index.ts'
import { MAX_DEPTH } from '../../../services/worker/src/convert/storage.ts'

// Nesting past MAX_DEPTH is flattened to its text, with one warning (issue 10, item 12: the mutation
// run found that no test tied the depth to each construct that nests). Each construct below is
// nested just deep enough to be flattened, and one level less: the page must keep its text either
// way, and only the deeper one may warn. How many levels that is follows from how many elements a
// level of the construct is (a list item with a paragraph is four: ul, li, p, span).

const WARNING = `nesting deeper than ${MAX_DEPTH} flattened to text`

const nest = (n: number, open: string, close: string, inner = 'deep text') =>
  open.repeat(n) + inner + close.repeat(n)

// [construct, storage nested n times, the least n that is flattened]
const constructs: Array<[string, (n: number) => string, number]> = [
  ['spans', (n) => nest(n, '<span>', '</span>'), 66],
  ['layout cells', (n) => nest(n, '<ac:layout-cell>', '</ac:layout-cell>'), 66],
  [
    'inline comment markers',
    (n) => nest(n, '<ac:inline-comment-marker>', '</ac:inline-comment-marker>'),
    66,
  ],
  [
    'macros with a rich body',
    (n) =>
      nest(
        n,
        '<ac:structured-macro ac:name="details"><ac:rich-text-body>',
        '</ac:rich-text-body></ac:structured-macro>',
      ),
    66,
  ],
  [
    'inline code around a page link',
    (n) =>
      nest(
        n,
        '<code>',
        '</code>',
        '<ac:link><ri:page ri:content-title="Deep"/>' +
          '<ac:plain-text-link-body><![CDATA[deep text]]></ac:plain-text-link-body></ac:link>',
      ),
    65,
  ],
  ['bold in headings', (n) => nest(n, '<h1><strong>', '</strong></h1>'), 33],
  ['list items holding a list', (n) => nest(n, '<ul><li><p>item</p>', '</li></ul>'), 33],
  ['list items with a paragraph', (n) => nest(n, '<ul><li><p><span>', '</span></p></li></ul>'), 17],
  [
    'ADF panels',
    (n) =>
      nest(
        n,
        '<ac:adf-extension><ac:adf-node type="panel"><ac:adf-content>',
        '</ac:adf-content></ac:adf-node></ac:adf-extension>',
      ),
    66,
  ],
  [
    'ADF fallbacks',
    (n) => nest(n, '<ac:adf-extension><ac:adf-fallback>', '</ac:adf-fallback></ac:adf-extension>'),
    66,
  ],
  [
    'ADF content of other nodes',
    (n) =>
      nest(
        n,
        '<ac:adf-extension><ac:adf-node type="other"><ac:adf-content>',
        '</ac:adf-content></ac:adf-node></ac:adf-extension>',
      ),
    66,
  ],
  [
    'link bodies',
    (n) =>
      nest(
        n,
        '<ac:link><ri:page ri:content-title="P"/><ac:link-body>',
        '</ac:link-body></ac:link>',
      ),
    66,
  ],
  [
    'image captions',
    (n) =>
      nest(
        n,
        '<ac:image><ri:url ri:value="https://x.test/i.png"/><ac:caption>',
        '</ac:caption></ac:image>',
      ),
    66,
  ],
  ['table captions', (n) => nest(n, '<table><caption>', '</caption></table>'), 66],
  [
    'spans in a table cell',
    (n) => `<table><tr><td>${nest(n, '<span>', '</span>')}</td></tr></table>`,
    64,
  ],
  [
    'spans in a table in a table cell',
    (n) =>
      `<table><tr><td><table><tr><td>${nest(n, '<span>', '</span>')}</td></tr></table></td></tr></table>`,
    62,
  ],
]

for (const [construct, storage, flattened] of constructs) {
  t.test(`${construct}: flattened from ${flattened} levels, with one warning`, async (t) => {
    const kept = convertStorage(storage(flattened - 1))
    t.same(kept.warnings, [], `${flattened - 1} levels: no warning`)
    t.match(kept.markdown, 'deep text')
    const flat = convertStorage(storage(flattened))
    t.same(flat.warnings, [WARNING], `${flattened} levels: one warning`)
    t.match(flat.markdown, 'deep text')
  })
}

t.test('tasks ten deep: the limit counts the task levels above the text', async (t) => {
  // A task's body is two levels below its list, and so is a task list nested in a task.
  const spans = (n: number) => nest(n, '<span>', '</span>')
  const inBodies = (n: number) =>
    nest(
      10,
      '<ac:task-list><ac:task><ac:task-body>',
      '</ac:task-body></ac:task></ac:task-list>',
      spans(n),
    )
  const inTasks = (n: number) =>
    nest(
      10,
      '<ac:task-list><ac:task><ac:task-body>t</ac:task-body>',
      '</ac:task></ac:task-list>',
      `<ac:task-list><ac:task><ac:task-body>${spans(n)}</ac:task-body></ac:task></ac:task-list>`,
    )
  for (const [how, storage, flattened] of [
    ['task lists in task bodies', inBodies, 46],
    ['task lists nested in tasks', inTasks, 44],
  ] as const) {
    const kept = convertStorage(storage(flattened - 1))
    t.same(kept.warnings, [], `${how}: ${flattened - 1} spans in the last task are kept`)
    const flat = convertStorage(storage(flattened))
    t.same(flat.warnings, [WARNING], `${how}: ${flattened} spans are flattened`)
    t.match(flat.markdown, /\[ \] +deep text/, `${how}: the last task keeps its text`)
  }
})

import t from 'tap'
import { convertStorage } from '../../../services/worker/src/convert/index.ts'

// Converter bugs found while killing mutants (issue 10, item 12): each test failed before its fix.

const md = (storage: string) => convertStorage(storage).markdown
const nest = (n: number, open: string, close: string, inner = 'deep text') =>
  open.repeat(n) + inner + close.repeat(n)

t.test('task lists nested in tasks are bounded like any nesting (no stack overflow)', async (t) => {
  // A task list inside an ac:task (not inside its body) recursed in taskList() without the depth
  // check: 5000 levels (390 KB, far below maxBytes) threw a RangeError out of convertStorage.
  const tasks = (n: number) =>
    nest(n, '<ac:task-list><ac:task><ac:task-body>t</ac:task-body>', '</ac:task></ac:task-list>')
  t.doesNotThrow(() => convertStorage(tasks(5000)))
  // 1000 levels did not throw, but the markdown pass overflowed and the page became plain text.
  const { markdown, warnings } = convertStorage(tasks(1000))
  t.notMatch(warnings.join('\n'), /converted as plain text/)
  t.match(markdown, /^- \[ \] t\n {2}- \[ \] t\n/)
})

t.test('a code block in a table inside a table cell keeps its code', async (t) => {
  // flattenBlocks() stripped the <pre data-code> placeholder's tags and left its text: "code".
  const code =
    '<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">js</ac:parameter>' +
    '<ac:plain-text-body><![CDATA[let x = 1]]></ac:plain-text-body></ac:structured-macro>'
  const inner = `<table><tr><td>a</td><td>${code}</td></tr></table>`
  // As in a cell of the outer table: the cell points at the block, which follows the table (the
  // block ends the line of the inner row it is in).
  t.equal(
    md(`<table><tr><td>${inner}</td></tr></table>`),
    '| a ·<br>(code block 1 below the table) |\n| --- |\n\nCode block 1:\n\n```js\nlet x = 1\n```\n',
  )
  // A markdown macro's body is set aside the same way, and kept too.
  const markdown =
    '<ac:structured-macro ac:name="markdown"><ac:plain-text-body><![CDATA[**bold**]]>' +
    '</ac:plain-text-body></ac:structured-macro>'
  t.equal(
    md(`<table><tr><td><table><tr><td>${markdown}</td></tr></table></td></tr></table>`),
    '| **bold** |\n| --- |\n',
  )
})

t.test('every pipe in a cell is escaped, also two in a row', async (t) => {
  // /(^|[^\\])\|/g consumed the character before each pipe: of "||" only the first was escaped,
  // and the second split the cell.
  t.equal(md('<table><tr><td>a||b</td></tr></table>'), '| a\\|\\|b |\n| --- |\n')
  t.equal(md('<table><tr><td>|||</td></tr></table>'), '| \\|\\|\\| |\n| --- |\n')
  // A backslash written before a pipe is text (escaped by turndown), and the pipe is escaped too.
  t.equal(md('<table><tr><td>a\\|b</td></tr></table>'), '| a\\\\\\|b |\n| --- |\n')
})

t.test("a legacy code macro's parameters are not part of its code", async (t) => {
  // Without a plain-text-body, the code was the macro's whole text, parameters included: "jsx".
  t.equal(
    md('<ac:macro ac:name="code"><ac:parameter ac:name="language">js</ac:parameter>x</ac:macro>'),
    '```js\nx\n```\n',
  )
  t.equal(
    md(
      '<ac:macro ac:name="noformat"><ac:default-parameter>nopanel</ac:default-parameter>' +
        '<ac:parameter ac:name="title">T</ac:parameter>a\n  b</ac:macro>',
    ),
    '**T**\n\n```\na\n  b\n```\n',
  )
})

t.test('flattening past MAX_DEPTH always warns', async (t) => {
  // The warning was given only at depth MAX_DEPTH + 1 exactly; constructs that step two levels at
  // a time (tables in table cells, task bodies, task lists in tasks) jumped over it and flattened
  // silently.
  const warning = 'nesting deeper than 64 flattened to text'
  const tables = `<table><tr><td>${nest(40, '<table><tr><td>', '</td></tr></table>')}</td></tr></table>`
  const flatTables = convertStorage(tables)
  t.same(flatTables.warnings, [warning], 'tables in table cells')
  t.match(flatTables.markdown, 'deep text')
  const inBodies = convertStorage(
    nest(40, '<ac:task-list><ac:task><ac:task-body>', '</ac:task-body></ac:task></ac:task-list>'),
  )
  t.same(inBodies.warnings, [warning], 'task lists in task bodies')
  t.match(inBodies.markdown, 'deep text')
  const inTasks = convertStorage(
    nest(40, '<ac:task-list><ac:task><ac:task-body>t</ac:task-body>', '</ac:task></ac:task-list>'),
  )
  t.same(inTasks.warnings, [warning], 'task lists nested in tasks')
})

t.test("an image caption's paragraphs are separate words in the alt text", async (t) => {
  // The alt text was the caption's text run together: "OneTwo".
  const image = (caption: string) =>
    md(
      `<ac:image><ri:url ri:value="https://x.test/d.png"/><ac:caption>${caption}</ac:caption></ac:image>`,
    )
  t.equal(image('<p>One</p><p>Two</p>'), '![One Two](https://x.test/d.png) _One Two_\n')
  // A line break parts words too; inline markup does not; a comment is no text.
  t.match(image('One<br/>Two'), /^!\[One Two\]\(/)
  t.match(image('<p>B<strong>ol</strong>d<!-- c --></p><div><p>x</p></div>'), /^!\[Bold x\]\(/)
})

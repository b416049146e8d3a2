import t from 'tap'
import { convertStorage } from '../../../services/worker/src/convert/index.ts'

// Code survives conversion byte for byte on the two paths where markdown itself gets in the way
// (issue 10, item 12): a code body holding a fence line of its own (the block's fence must be
// longer, and the whitespace pass must not take the inner line for the end of the block), and a
// code block inside a table cell (a cell cannot hold a fenced block: it is lifted below the
// table, and the cell points at it).

const md = (storage: string) => convertStorage(storage).markdown

const codeMacro = (body: string, language = '') =>
  '<ac:structured-macro ac:name="code">' +
  (language === '' ? '' : `<ac:parameter ac:name="language">${language}</ac:parameter>`) +
  `<ac:plain-text-body><![CDATA[${body}]]></ac:plain-text-body></ac:structured-macro>`

/** The bodies of the fenced blocks of a markdown text, as a CommonMark reader sees them. */
function fencedBodies(markdown: string): Array<{ info: string; body: string }> {
  const blocks: Array<{ info: string; body: string }> = []
  let open: { fence: string; info: string; lines: string[] } | undefined
  for (const line of markdown.split('\n')) {
    if (open === undefined) {
      const start = /^(`{3,})([^`]*)$/.exec(line)
      if (start) open = { fence: start[1] as string, info: (start[2] as string).trim(), lines: [] }
      continue
    }
    // A closing fence: backticks only, at least as many as the opening one.
    if (/^`+$/.test(line.trim()) && line.trim().length >= open.fence.length) {
      blocks.push({ info: open.info, body: `${open.lines.join('\n')}\n` })
      open = undefined
    } else open.lines.push(line)
  }
  return blocks
}

t.test('a code body holding a ``` line keeps every line, blank runs and spaces', async (t) => {
  // Trailing spaces, a tab, a run of blank lines after the inner fence: were the inner ``` taken
  // for the end of the block, the whitespace pass would strip and squeeze them.
  const body = 'Write this in README.md:\n```sh\nnpm install   \n\n\n```\n  done\t\n'
  const out = md(`<p>Intro</p>${codeMacro(body, 'markdown')}<p>After</p>`)
  t.equal(out, `Intro\n\n\`\`\`\`markdown\n${body}\`\`\`\`\n\nAfter\n`)
  t.same(fencedBodies(out), [{ info: 'markdown', body }], 'one block, the body verbatim')
})

t.test(
  'a fence as long as the body needs: four backticks in the body, five around it',
  async (t) => {
    const body = 'a\n````\n\n\nb  \n```\nc'
    const out = md(codeMacro(body))
    t.equal(out, `\`\`\`\`\`\n${body}\n\`\`\`\`\`\n`)
    t.same(fencedBodies(out), [{ info: '', body: `${body}\n` }])
  },
)

t.test('a ``` line in a code body inside a panel stays inside the block', async (t) => {
  const body = '```\nnot the end   \n\n\n```'
  const out = md(
    `<ac:structured-macro ac:name="info"><ac:rich-text-body>${codeMacro(body)}</ac:rich-text-body></ac:structured-macro>`,
  )
  // The block sits in a quote: every line of it carries the quote marker, the body is intact.
  const unquoted = out
    .split('\n')
    .map((line) => line.replace(/^> ?/, ''))
    .join('\n')
  t.same(fencedBodies(unquoted), [{ info: '', body: `${body}\n` }], out)
})

t.test('code in table cells is lifted below the table, byte for byte', async (t) => {
  const sql = 'select a | b\n\nfrom t;  '
  const fenced = 'a\n````\nb'
  const out = md(
    '<table><tbody>' +
      '<tr><th><p>Query</p></th><th><p>Note</p></th></tr>' +
      `<tr><td>${codeMacro(sql, 'sql')}</td><td><p>x</p>${codeMacro(fenced)}</td></tr>` +
      '</tbody></table><p>End</p>',
  )
  t.equal(
    out,
    '| Query | Note |\n| --- | --- |\n' +
      '| (code block 1 below the table) | x<br>(code block 2 below the table) |\n\n' +
      `Code block 1:\n\n\`\`\`sql\n${sql}\n\`\`\`\n\n` +
      `Code block 2:\n\n\`\`\`\`\`\n${fenced}\n\`\`\`\`\`\n\nEnd\n`,
  )
  t.same(fencedBodies(out), [
    { info: 'sql', body: `${sql}\n` },
    { info: '', body: `${fenced}\n` },
  ])
  // The table keeps its shape: two columns in every row, no line of code inside it.
  const table = out.split('\n\n')[0] as string
  t.same(
    table.split('\n').map((row) => row.split(/(?<!\\)\|/).length - 2),
    [2, 2, 2],
    'three rows of two cells',
  )
})

t.test('lifted code starts again at 1 for each table', async (t) => {
  const cell = (body: string) =>
    `<table><tbody><tr><td>${codeMacro(body)}</td></tr></tbody></table>`
  const out = md(`${cell('first()')}<p>between</p>${cell('second()')}`)
  t.equal(
    out,
    '| (code block 1 below the table) |\n| --- |\n\nCode block 1:\n\n```\nfirst()\n```\n\n' +
      'between\n\n' +
      '| (code block 1 below the table) |\n| --- |\n\nCode block 1:\n\n```\nsecond()\n```\n',
  )
})

import t from 'tap'
import { convertStorage } from '../../../services/worker/src/convert/index.ts'

// Merged and malformed cells (issue 10, item 12: the mutation run found these edges unguarded):
// a table is rebuilt as a regular grid, each merged cell repeated in every slot it covers.

const md = (storage: string) => convertStorage(storage).markdown

t.test('a rowspan in a later column leaves the next row its own first cells', async (t) => {
  t.equal(
    md('<table><tr><td>a</td><td rowspan="2">b</td></tr><tr><td>c</td></tr></table>'),
    '| a | b |\n| --- | --- |\n| c | b |\n',
  )
  t.equal(
    md(
      '<table><tr><td>a</td><td rowspan="3">b</td><td>c</td></tr>' +
        '<tr><td>d</td><td>e</td></tr><tr><td>f</td><td>g</td></tr></table>',
    ),
    '| a | b | c |\n| --- | --- | --- |\n| d | b | e |\n| f | b | g |\n',
  )
})

t.test('a rowspan past the last row adds no rows', async (t) => {
  t.equal(
    md('<table><tr><td>a</td><td rowspan="5">b</td></tr><tr><td>c</td></tr></table>'),
    '| a | b |\n| --- | --- |\n| c | b |\n',
  )
  t.equal(md('<table><tr><td rowspan="9">only</td></tr></table>'), '| only |\n| --- |\n')
  t.equal(
    md('<table><tr><td>a</td><td>b</td></tr><tr><td rowspan="3">c</td><td>d</td></tr></table>'),
    '| a | b |\n| --- | --- |\n| c | d |\n',
    'a rowspan in the last row',
  )
})

t.test('a span that is not a positive number is one cell', async (t) => {
  for (const span of ['0', '-2', 'wide', '']) {
    t.equal(
      md(
        `<table><tr><td colspan="${span}">a</td><td rowspan="${span}">b</td><td>c</td></tr>` +
          '<tr><td>d</td><td>e</td><td>f</td></tr></table>',
      ),
      '| a | b | c |\n| --- | --- | --- |\n| d | e | f |\n',
      JSON.stringify(span),
    )
  }
})

t.test('a table with no cells leaves nothing', async (t) => {
  t.equal(md('<p>before</p><table><tr></tr><tr></tr></table><p>after</p>'), 'before\n\nafter\n')
  t.equal(md('<p>before</p><table></table><p>after</p>'), 'before\n\nafter\n')
})

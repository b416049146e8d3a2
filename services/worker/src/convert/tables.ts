// Tables are rebuilt as regular grids before the markdown pass, so the markdown rules stay
// linear (the GFM plugin's table rules re-read live row collections per cell: a 400×8 table took
// 6 s) and so merged cells are never lost: a colspan or rowspan repeats the cell's content in
// every slot it covers. The first row is the header row, as GFM requires one.

export type SourceCell = { html: string; colspan: number; rowspan: number }

const span = (n: number) => (Number.isFinite(n) && n >= 1 ? Math.min(n, 1000) : 1)

export function buildTable(rows: SourceCell[][]): string {
  const grid: string[][] = []
  rows.forEach((row, r) => {
    grid[r] ??= []
    let c = 0
    for (const cell of row) {
      const line = grid[r] as string[]
      while (line[c] !== undefined) c++
      const rowspan = Math.min(span(cell.rowspan), rows.length - r)
      const colspan = span(cell.colspan)
      for (let dr = 0; dr < rowspan; dr++) {
        grid[r + dr] ??= []
        const target = grid[r + dr] as string[]
        for (let dc = 0; dc < colspan; dc++) target[c + dc] = cell.html
      }
      c += colspan
    }
  })
  const width = Math.max(0, ...grid.map((line) => line.length))
  if (width === 0) return ''
  let out = '<table>'
  grid.forEach((line, r) => {
    // Stryker disable next-line ConditionalExpression,EqualityOperator: the markdown pass reads th and td alike (one table-cell rule) and makes the first row the header whatever its cells
    const tag = r === 0 ? 'th' : 'td'
    // Stryker disable next-line StringLiteral: the HTML parser behind turndown opens the row a <th> or <td> needs by itself
    out += '<tr>'
    for (let c = 0; c < width; c++) out += `<${tag}>${line[c] ?? ''}</${tag}>`
    // Stryker disable next-line StringLiteral: the HTML parser behind turndown closes a row when the next <tr> or the table ends
    out += '</tr>'
  })
  return `${out}</table>`
}

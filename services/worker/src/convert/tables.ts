// Tables are rebuilt as regular grids before the markdown pass, so the markdown rules stay
// linear (the GFM plugin's table rules re-read live row collections per cell: a 400×8 table took
// 6 s) and so merged cells are never lost: a colspan or rowspan repeats the cell's content in
// every slot it covers. The first row is the header row, as GFM requires one.

export type SourceCell = { html: string; colspan: number; rowspan: number }

/**
 * Slots a page's grids may hold beyond the cells the page wrote (span copies, padding of short
 * rows). Spans multiply: forty 50-byte rows `<td colspan="1000" rowspan="1000">` made a grid of
 * 1.6 million slots (7 s, 6 MB of markdown), a few more rows ran out of memory. The page's own
 * cells cost nothing against it, so a big table of plain cells stays a table.
 */
export const MAX_EXTRA_TABLE_CELLS = 200_000

const span = (n: number) => (Number.isFinite(n) && n >= 1 ? Math.min(n, 1000) : 1)

export type BuiltTable = { html: string; extra: number }

/**
 * The rows as a regular grid in HTML, and how many slots it holds beyond the rows' own cells;
 * null when that would be over `budget` (the caller lays the table out otherwise).
 */
export function buildTable(rows: SourceCell[][], budget: number): BuiltTable | null {
  let cells = 0
  for (const row of rows) cells += row.length
  // Every slot written counts (a span may write over another's): the work stays within budget.
  let room = cells + budget
  const grid: string[][] = []
  for (let r = 0; r < rows.length; r++) {
    grid[r] ??= []
    let c = 0
    for (const cell of rows[r] as SourceCell[]) {
      const line = grid[r] as string[]
      while (line[c] !== undefined) c++
      const rowspan = Math.min(span(cell.rowspan), rows.length - r)
      const colspan = span(cell.colspan)
      room -= rowspan * colspan
      if (room < 0) return null
      for (let dr = 0; dr < rowspan; dr++) {
        grid[r + dr] ??= []
        const target = grid[r + dr] as string[]
        for (let dc = 0; dc < colspan; dc++) target[c + dc] = cell.html
      }
      c += colspan
    }
  }
  // A loop, not Math.max(...): a spread of many thousand rows overflows the stack.
  let width = 0
  for (const line of grid) width = Math.max(width, line.length)
  if (width === 0) return { html: '', extra: 0 }
  // Cells written over by another's span leave fewer slots than cells: no credit for those.
  const extra = Math.max(0, grid.length * width - cells)
  if (extra > budget) return null
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
  return { html: `${out}</table>`, extra }
}

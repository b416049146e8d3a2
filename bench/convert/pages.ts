// Deterministic Confluence storage-format pages for `pnpm bench convert`, built as
// shared/reference/performance-notes.md §2 describes its turndown measurements (about 21 KB a
// page, 20 variants): headings; paragraphs with strong/em/code/links, ac:link page links and
// ri:user mentions; two tables (4×9 and 5×13) with colgroup and <p> in every cell; two code
// macros whose CDATA holds <, > and &&; info/note/warning panels; nested lists with <p> in li;
// a task list; an attached image; a self-closing toc macro.

const WORDS = (
  'confluence page space worker queue index embedding vector search answer cluster node ' +
  'release deploy rollback config secret token policy gateway proxy latency budget owner ' +
  'review draft publish label attachment export import migrate backup restore schema table ' +
  'column row metric alert dashboard incident runbook escalation oncall handover sprint ' +
  'backlog ticket feature flag canary region replica shard partition retention archive ' +
  '설치 설정 사용자 관리자 권한 로그 서버 데이터베이스 연결 확인'
).split(' ')

/** mulberry32: a small seeded generator, so every run builds the same pages. */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

export function buildPage(variant: number): string {
  const rand = random(0x5eed + variant * 7919)
  const pick = <T>(list: readonly T[]) => list[Math.floor(rand() * list.length)] as T
  const words = (n: number) => Array.from({ length: n }, () => pick(WORDS)).join(' ')
  const title = () => words(2 + Math.floor(rand() * 3))

  const inline = (): string => {
    switch (Math.floor(rand() * 7)) {
      case 0:
        return `<strong>${words(2)}</strong>`
      case 1:
        return `<em>${words(2)}</em>`
      case 2:
        return `<code>${pick(WORDS)}_${pick(WORDS)}()</code>`
      case 3:
        return `<a href="https://example.com/${pick(WORDS)}?q=${pick(WORDS)}&amp;p=${variant}">${words(2)}</a>`
      case 4:
        return `<ac:link><ri:page ri:content-title="${title()}" /><ac:plain-text-link-body><![CDATA[${words(2)}]]></ac:plain-text-link-body></ac:link>`
      case 5:
        return `<ac:link><ri:user ri:account-id="5b10ac8d82e05b22cc7d4e${String(Math.floor(rand() * 1000)).padStart(3, '0')}" /></ac:link>`
      default:
        return words(3)
    }
  }
  const paragraph = () => {
    let p = '<p>'
    for (let i = 0; i < 6; i++) p += `${words(5 + Math.floor(rand() * 6))} ${inline()} `
    return `${p}${words(4)}.</p>`
  }
  const table = (columns: number, rows: number) => {
    let html = `<table data-layout="default"><colgroup>${'<col style="width: 170.0px;" />'.repeat(columns)}</colgroup><tbody>`
    for (let r = 0; r < rows; r++) {
      html += '<tr>'
      for (let c = 0; c < columns; c++) {
        const tag = r === 0 ? 'th' : 'td'
        const text =
          r === 0 ? `<strong>${words(2)}</strong>` : `${words(3)} ${c === 1 ? inline() : ''}`
        html += `<${tag}><p>${text}</p></${tag}>`
      }
      html += '</tr>'
    }
    return `${html}</tbody></table>`
  }
  const code = (language: string) => {
    const lines = [
      `#!/usr/bin/env ${language}`,
      `if [ "$COUNT" -lt 10 ] && [ -n "$${pick(WORDS).toUpperCase()}" ]; then`,
      `  echo "<${pick(WORDS)}> ${words(3)}" > /tmp/${pick(WORDS)}.log && exit 0`,
      `fi`,
      `for x in $(seq 1 5); do test $x -gt 2 && echo "x > 2: <b>$x</b>"; done`,
      `curl -s "https://api.example.com/${pick(WORDS)}?a=1&b=2" | jq '.items[] | select(.n < 3)'`,
    ]
    return (
      `<ac:structured-macro ac:name="code" ac:schema-version="1" ac:macro-id="m${variant}${language}">` +
      `<ac:parameter ac:name="language">${language}</ac:parameter>` +
      `<ac:parameter ac:name="title">${words(2)}</ac:parameter>` +
      `<ac:plain-text-body><![CDATA[${lines.join('\n')}]]></ac:plain-text-body></ac:structured-macro>`
    )
  }
  const panel = (name: string) =>
    `<ac:structured-macro ac:name="${name}" ac:schema-version="1"><ac:rich-text-body>${paragraph()}</ac:rich-text-body></ac:structured-macro>`
  const list = (tag: 'ul' | 'ol', depth: number): string => {
    let html = `<${tag}>`
    for (let i = 0; i < 3; i++) {
      html += `<li><p>${words(6)} ${inline()}</p>`
      if (depth < 2 && i === 1) html += list(tag === 'ul' ? 'ol' : 'ul', depth + 1)
      html += '</li>'
    }
    return `${html}</${tag}>`
  }
  const tasks = () => {
    let html = '<ac:task-list>'
    for (let i = 0; i < 4; i++) {
      html +=
        `<ac:task><ac:task-id>${i + 1}</ac:task-id>` +
        `<ac:task-status>${i % 2 === 0 ? 'complete' : 'incomplete'}</ac:task-status>` +
        `<ac:task-body>${words(5)}</ac:task-body></ac:task>`
    }
    return `${html}</ac:task-list>`
  }

  // Sections vary in count so the pages vary in size around 21 KB.
  const parts: string[] = ['<ac:structured-macro ac:name="toc" />', `<h1>${title()}</h1>`]
  parts.push(paragraph(), panel('info'), paragraph())
  parts.push(`<h2>${title()}</h2>`, paragraph(), table(4, 9), paragraph())
  parts.push(`<h3>${title()}</h3>`, list('ul', 0), code('bash'), panel('note'))
  parts.push(`<h2>${title()}</h2>`, paragraph(), table(5, 13), list('ol', 0))
  parts.push(`<h3>${title()}</h3>`, tasks(), code('python'), panel('warning'))
  parts.push(
    `<p><ac:image ac:width="600"><ri:attachment ri:filename="${pick(WORDS)}-diagram.png" /></ac:image></p>`,
  )
  const extra = 8 + (variant % 7)
  for (let i = 0; i < extra; i++) parts.push(i % 3 === 0 ? `<h3>${title()}</h3>` : paragraph())
  return parts.join('\n')
}

/** A table of `rows` × `columns` with a header row and <p> in every cell, as Confluence writes. */
export function buildTable(rows: number, columns: number): string {
  let html = `<table><colgroup>${'<col />'.repeat(columns)}</colgroup><tbody>`
  for (let r = 0; r < rows; r++) {
    html += '<tr>'
    for (let c = 0; c < columns; c++) {
      const tag = r === 0 ? 'th' : 'td'
      html += `<${tag}><p>${r === 0 ? `Column ${c + 1}` : `row ${r} cell ${c + 1}`}</p></${tag}>`
    }
    html += '</tr>'
  }
  return `${html}</tbody></table>`
}

import t from 'tap'
import { ConversionError, convertStorage } from '../../../services/worker/src/convert/index.ts'

const md = (storage: string, options: Parameters<typeof convertStorage>[1] = {}) =>
  convertStorage(storage, options).markdown

t.test('headings, paragraphs, emphasis, rules, quotes', async (t) => {
  t.equal(
    md(
      '<h1>Title</h1><p>Some <strong>bold</strong>, <em>italic</em>, <s>gone</s> and <code>x()</code>.</p>' +
        '<hr/><blockquote><p>Quoted</p></blockquote><h3>Deeper</h3><p>a<br/>b</p>',
    ),
    '# Title\n\nSome **bold**, _italic_, ~~gone~~ and `x()`.\n\n---\n\n> Quoted\n\n### Deeper\n\na\\\nb\n',
  )
})

t.test('lists and nested lists, with <p> in items as Confluence writes them', async (t) => {
  t.equal(
    md(
      '<ul><li><p>one</p></li><li><p>two</p><ul><li><p>two.a</p></li></ul></li></ul>' +
        '<ol start="3"><li>three</li><li>four</li></ol>',
    ),
    '- one\n- two\n  - two.a\n\n3. three\n4. four\n',
  )
})

t.test('tables: header row, colgroup ignored, <p> in cells, pipes escaped', async (t) => {
  t.equal(
    md(
      '<table><colgroup><col/><col/></colgroup><tbody>' +
        '<tr><th><p>Name</p></th><th><p>Value</p></th></tr>' +
        '<tr><td><p>a|b</p></td><td><p>one</p><p>two</p></td></tr>' +
        '</tbody></table>',
    ),
    '| Name | Value |\n| --- | --- |\n| a\\|b | one<br>two |\n',
  )
})

t.test('tables: colspan and rowspan repeat the cell, lists in cells are kept', async (t) => {
  t.equal(
    md(
      '<table><tr><th colspan="2">Both</th><th>C</th></tr>' +
        '<tr><td rowspan="2">tall</td><td>x</td><td><ul><li>i1</li><li>i2</li></ul></td></tr>' +
        '<tr><td>y</td></tr></table>',
    ),
    '| Both | Both | C |\n| --- | --- | --- |\n| tall | x | - i1<br>- i2 |\n| tall | y |  |\n',
  )
})

t.test('a table without header cells still gets its first row as the header', async (t) => {
  t.equal(
    md('<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>'),
    '| a | b |\n| --- | --- |\n| c |  |\n',
  )
})

t.test('a table inside a table cell degrades to lines of text', async (t) => {
  t.equal(
    md(
      '<table><tr><th>outer</th></tr><tr><td><table><tr><td>i1</td><td>i2</td></tr><tr><td>i3</td></tr></table></td></tr></table>',
    ),
    '| outer |\n| --- |\n| i1 · i2<br>i3 |\n',
  )
})

t.test('layouts, sections and columns are reading order, never a table', async (t) => {
  t.equal(
    md(
      '<ac:layout><ac:layout-section ac:type="two_equal"><ac:layout-cell><p>left</p></ac:layout-cell>' +
        '<ac:layout-cell><p>right</p></ac:layout-cell></ac:layout-section></ac:layout>',
    ),
    'left\n\nright\n',
  )
})

t.test('code macro: fenced, with language and title, body byte for byte', async (t) => {
  const body = 'if (a < b && c > d) {\n  return "<p>&amp;</p>"\n}\r\n\ttabbed  '
  const out = md(
    `<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">js</ac:parameter>` +
      `<ac:parameter ac:name="title">Example</ac:parameter><ac:plain-text-body><![CDATA[${body}]]></ac:plain-text-body></ac:structured-macro>`,
  )
  t.equal(out, `**Example**\n\n\`\`\`js\n${body}\n\`\`\`\n`)
})

t.test('a fence longer than any backtick run in the body', async (t) => {
  const body = 'use ```js fences``` or ````'
  t.equal(
    md(
      `<ac:structured-macro ac:name="code"><ac:plain-text-body><![CDATA[${body}]]></ac:plain-text-body></ac:structured-macro>`,
    ),
    `\`\`\`\`\`\n${body}\n\`\`\`\`\`\n`,
  )
})

t.test('noformat macro and a self-closing macro before it do not swallow the page', async (t) => {
  t.equal(
    md(
      '<ac:structured-macro ac:name="toc" /><p>before</p><ac:structured-macro ac:name="noformat">' +
        '<ac:plain-text-body><![CDATA[raw <text>]]></ac:plain-text-body></ac:structured-macro><p>after</p>',
    ),
    'before\n\n```\nraw <text>\n```\n\nafter\n',
  )
})

t.test('panels become labelled blockquotes', async (t) => {
  const panel = (name: string, extra = '') =>
    md(
      `<ac:structured-macro ac:name="${name}">${extra}<ac:rich-text-body><p>Body text.</p><p>More.</p></ac:rich-text-body></ac:structured-macro>`,
    )
  t.equal(panel('info'), '> **Info:** Body text.\n>\n> More.\n')
  t.equal(panel('note'), '> **Note:** Body text.\n>\n> More.\n')
  t.equal(panel('tip'), '> **Tip:** Body text.\n>\n> More.\n')
  t.equal(panel('warning'), '> **Warning:** Body text.\n>\n> More.\n')
  t.equal(
    panel('warning', '<ac:parameter ac:name="title">Careful</ac:parameter>'),
    '> **Warning: Careful:** Body text.\n>\n> More.\n',
  )
  t.equal(
    panel(
      'panel',
      '<ac:parameter ac:name="panelIconText">🌈</ac:parameter><ac:parameter ac:name="bgColor">#E6FCFF</ac:parameter>',
    ),
    '> 🌈 Body text.\n>\n> More.\n',
  )
  t.equal(
    md(
      '<ac:structured-macro ac:name="info"><ac:rich-text-body><ul><li>item</li></ul></ac:rich-text-body></ac:structured-macro>',
    ),
    '> **Info:**\n>\n> - item\n',
  )
})

t.test('Cloud adf-extension panels are labelled too', async (t) => {
  const adf = (type: string) =>
    md(
      `<ac:adf-extension><ac:adf-node type="panel"><ac:adf-attribute key="panel-type">${type}</ac:adf-attribute>` +
        '<ac:adf-content><p>Careful now.</p></ac:adf-content></ac:adf-node><ac:adf-fallback><div><p>Careful now.</p></div></ac:adf-fallback></ac:adf-extension>',
    )
  t.equal(adf('note'), '> **Note:** Careful now.\n')
  t.equal(adf('error'), '> **Error:** Careful now.\n')
  t.equal(adf('success'), '> **Success:** Careful now.\n')
  t.equal(
    md(
      '<ac:adf-extension><ac:adf-node type="decision-list"></ac:adf-node><ac:adf-fallback><p>fallback text</p></ac:adf-fallback></ac:adf-extension>',
    ),
    'fallback text\n',
  )
})

t.test('expand: its title then its body; status: [TEXT]', async (t) => {
  t.equal(
    md(
      '<ac:structured-macro ac:name="expand"><ac:parameter ac:name="title">More details</ac:parameter><ac:rich-text-body><p>Hidden.</p></ac:rich-text-body></ac:structured-macro>',
    ),
    '**More details**\n\nHidden.\n',
  )
  t.equal(
    md(
      '<p>State: <ac:structured-macro ac:name="status"><ac:parameter ac:name="colour">Green</ac:parameter><ac:parameter ac:name="title">DONE</ac:parameter></ac:structured-macro></p>',
    ),
    'State: [DONE]\n',
  )
})

t.test(
  'details, excerpt and unknown macros keep their bodies and titles; navigation is dropped',
  async (t) => {
    t.equal(
      md(
        '<ac:structured-macro ac:name="details"><ac:rich-text-body><table><tr><th>Owner</th><td>Ann</td></tr></table></ac:rich-text-body></ac:structured-macro>',
      ),
      '| Owner | Ann |\n| --- | --- |\n',
    )
    t.equal(
      md(
        '<ac:structured-macro ac:name="excerpt"><ac:rich-text-body><p>The gist.</p></ac:rich-text-body></ac:structured-macro>',
      ),
      'The gist.\n',
    )
    t.equal(
      md(
        '<ac:structured-macro ac:name="vendor-box"><ac:parameter ac:name="title">Box</ac:parameter><ac:rich-text-body><p>Inside.</p></ac:rich-text-body></ac:structured-macro>',
      ),
      '**Box**\n\nInside.\n',
    )
    for (const nav of [
      'toc',
      'children',
      'pagetree',
      'livesearch',
      'recently-updated',
      'contentbylabel',
      'blog-posts',
    ]) {
      t.equal(
        md(
          `<p>a</p><ac:structured-macro ac:name="${nav}"><ac:parameter ac:name="x">y</ac:parameter></ac:structured-macro><p>b</p>`,
        ),
        'a\n\nb\n',
        nav,
      )
    }
  },
)

t.test('include shows where the content comes from', async (t) => {
  t.equal(
    md(
      '<ac:structured-macro ac:name="include"><ac:parameter ac:name=""><ac:link><ri:page ri:content-title="Shared part" /></ac:link></ac:parameter></ac:structured-macro>',
      { spaceKey: 'ENG' },
    ),
    'Included from [Shared part](confluence://page/ENG/Shared%20part)\n',
  )
})

t.test('task lists with status and due dates', async (t) => {
  t.equal(
    md(
      '<ac:task-list><ac:task><ac:task-id>1</ac:task-id><ac:task-status>complete</ac:task-status><ac:task-body>Ship it</ac:task-body></ac:task>' +
        '<ac:task><ac:task-id>2</ac:task-id><ac:task-status>incomplete</ac:task-status><ac:task-body>Review <time datetime="2020-01-01" /></ac:task-body></ac:task></ac:task-list>',
    ),
    '- [x] Ship it\n- [ ] Review (due 2020-01-01)\n',
  )
})

t.test('links to pages, anchors, attachments, users, spaces and URLs', async (t) => {
  const options = {
    spaceKey: 'ENG',
    resolvePage: (p: { title: string; spaceKey?: string }) =>
      p.title === 'Known' ? 'https://wiki.example.com/x/known' : undefined,
    resolveUser: (u: { accountId?: string }) =>
      u.accountId === 'abc' ? { displayName: 'Ann Smith' } : undefined,
  }
  const link = (inner: string, extra = '') =>
    md(`<p><ac:link${extra}>${inner}</ac:link></p>`, options)
  t.equal(
    link('<ri:page ri:content-title="Known" />'),
    '[Known](https://wiki.example.com/x/known)\n',
  )
  t.equal(
    link(
      '<ri:page ri:content-title="Other page" ri:space-key="OPS" /><ac:plain-text-link-body><![CDATA[see this]]></ac:plain-text-link-body>',
    ),
    '[see this](confluence://page/OPS/Other%20page)\n',
  )
  t.equal(
    link('<ri:page ri:content-title="Known" />', ' ac:anchor="Setup"'),
    '[Known](https://wiki.example.com/x/known#Setup)\n',
  )
  t.equal(link('', ' ac:anchor="Setup"'), '[Setup](#Setup)\n')
  t.equal(
    link('<ri:attachment ri:filename="plan v2.pdf" />'),
    '[plan v2.pdf](confluence://attachment//plan%20v2.pdf)\n',
  )
  t.equal(link('<ri:user ri:account-id="abc" />'), '@Ann Smith\n')
  t.equal(link('<ri:user ri:account-id="zzz" />'), '@zzz\n')
  t.equal(link('<ri:space ri:space-key="OPS" />'), '[OPS](confluence://space/OPS)\n')
  t.equal(
    link(
      '<ri:url ri:value="https://example.com/a" /><ac:link-body><strong>bold</strong> text</ac:link-body>',
    ),
    '[**bold** text](https://example.com/a)\n',
  )
  t.equal(md('<p><ri:user ri:account-id="abc" /> wrote</p>', options), '@Ann Smith wrote\n')
})

t.test('anchor links carry the heading ids of their deployment', async (t) => {
  const link = (inner: string, anchor: string, options: Parameters<typeof md>[1]) =>
    md(`<p><ac:link ac:anchor="${anchor}">${inner}</ac:link></p>`, {
      baseUrl: 'https://wiki.acme.test/confluence',
      spaceKey: 'OPS',
      pageId: '7',
      ...options,
    })
  const dc = { anchorStyle: 'server', pageTitle: 'Release Notes' } as const
  // Data Center: `<page title>-<anchor>`, the whitespace of both removed, on the page it names.
  t.equal(link('', 'install', dc), '[install](#ReleaseNotes-install)\n')
  t.equal(link('', 'Getting Started', dc), '[Getting Started](#ReleaseNotes-GettingStarted)\n')
  t.equal(
    link('<ri:page ri:content-title="Deploy Guide" />', 'Roll back', dc),
    '[Deploy Guide](https://wiki.acme.test/confluence/display/OPS/Deploy+Guide#DeployGuide-Rollback)\n',
  )
  t.equal(
    link('<ri:blog-post ri:content-title="Q3 plan" />', 'Goals', dc),
    '[Q3 plan](https://wiki.acme.test/confluence/display/OPS/Q3+plan#Q3plan-Goals)\n',
  )
  t.equal(
    link('', 'install', { anchorStyle: 'server' }),
    '[install](#-install)\n',
    'without its title, only the anchor part of the id is known',
  )
  // Cloud: the heading text with `-` for spaces; an anchor its editor wrote encoded stays as is.
  const cloud = { anchorStyle: 'cloud', pageTitle: 'Release Notes' } as const
  t.equal(link('', 'Getting Started', cloud), '[Getting Started](#Getting-Started)\n')
  t.equal(link('', 'install', {}), '[install](#install)\n', 'Cloud is the default')
  t.equal(
    link('<ri:page ri:content-title="My Dashboard" />', 'QueryPie-Web%EC%97%90', cloud),
    '[My Dashboard](https://wiki.acme.test/confluence/display/OPS/My+Dashboard#QueryPie-Web%EC%97%90)\n',
  )
  t.equal(link('', 'QueryPie-Web%EC%97%90', cloud), '[QueryPie-Web에](#QueryPie-Web%EC%97%90)\n')
  t.equal(link('', '100%', cloud), '[100%](#100%25)\n', 'a lone % is taken as written')
  // Other targets keep the anchor as written.
  t.equal(
    link('<ri:attachment ri:filename="a.pdf" />', 'page=2', dc),
    '[a.pdf](https://wiki.acme.test/confluence/download/attachments/7/a.pdf#page=2)\n',
  )
  t.equal(link('<ri:user ri:account-id="nobody" />', 'x', dc), '@nobody\n')
  t.equal(
    link('<ri:page ri:content-title="Elsewhere" />', 'Setup', {
      ...dc,
      resolvePage: () => 'https://wiki.acme.test/confluence/x/abc#top',
    }),
    '[Elsewhere](https://wiki.acme.test/confluence/x/abc#top)\n',
    'a resolved URL that has a fragment keeps it',
  )
  t.equal(md('<p><ac:link><ac:link-body>no target</ac:link-body></ac:link></p>', dc), 'no target\n')
})

t.test('with a base URL, page and attachment links are real Confluence URLs', async (t) => {
  const options = { baseUrl: 'https://acme.atlassian.net/wiki/', spaceKey: 'ENG', pageId: '42' }
  t.equal(
    md('<p><ac:link><ri:page ri:content-title="Deploy &amp; run" /></ac:link></p>', options),
    '[Deploy & run](https://acme.atlassian.net/wiki/display/ENG/Deploy+%26+run)\n',
  )
  t.equal(
    md('<ac:image><ri:attachment ri:filename="a b.png" /></ac:image>', options),
    '![a b.png](https://acme.atlassian.net/wiki/download/attachments/42/a%20b.png)\n',
  )
})

t.test('images: alt, else caption, else file name; the caption is kept', async (t) => {
  t.equal(
    md(
      '<ac:image ac:alt="Architecture"><ri:url ri:value="https://example.com/a.png" /></ac:image>',
    ),
    '![Architecture](https://example.com/a.png)\n',
  )
  t.equal(
    md(
      '<ac:image ac:alt="diagram.png"><ri:attachment ri:filename="diagram.png" /><ac:caption><p>The data flow</p></ac:caption></ac:image>',
    ),
    '![The data flow](confluence://attachment//diagram.png) _The data flow_\n',
  )
})

t.test('emoticons become emoji, time becomes the date, jira the issue key', async (t) => {
  t.equal(
    md(
      '<p><ac:emoticon ac:name="tick" /> <ac:emoticon ac:name="blue-star" ac:emoji-id="1f308" /> <ac:emoticon ac:name="smile" ac:emoji-fallback="🙂" /> <ac:emoticon ac:name="custom" /></p>',
    ),
    '✅ 🌈 🙂 :custom:\n',
  )
  t.equal(md('<p>On <time datetime="2024-05-01" />.</p>'), 'On 2024-05-01.\n')
  const jira =
    '<p><ac:structured-macro ac:name="jira"><ac:parameter ac:name="key">ENG-42</ac:parameter></ac:structured-macro></p>'
  t.equal(md(jira), 'ENG-42\n')
  t.equal(
    md(jira, { jiraBaseUrl: 'https://acme.atlassian.net' }),
    '[ENG-42](https://acme.atlassian.net/browse/ENG-42)\n',
  )
})

t.test('inline comment markers and placeholders leave no trace but their text', async (t) => {
  t.equal(
    md(
      '<p>Keep <ac:inline-comment-marker ac:ref="x">this</ac:inline-comment-marker> text<ac:placeholder>Type here</ac:placeholder></p>',
    ),
    'Keep this text\n',
  )
})

t.test('whitespace is normalised for stable diffs', async (t) => {
  t.equal(md('<p>a&nbsp;&nbsp;</p><p></p><p></p><p>  b   </p>\n\n\n'), 'a\n\nb\n')
  t.equal(md(''), '')
})

t.test('robust: malformed, truncated, undeclared entities, deep nesting, huge input', async (t) => {
  t.equal(md('<p>unclosed <strong>bold'), 'unclosed **bold**\n')
  t.equal(md('<p>&rarr; &hellip; &unknownentity; &amp;</p>'), '→ … &unknownentity; &\n')
  t.equal(
    md('<ac:structured-macro ac:name="code"><ac:plain-text-body><![CDATA[cut off'),
    '```\ncut off\n```\n',
  )
  const deep = `${'<div>'.repeat(5000)}deep text${'</div>'.repeat(5000)}`
  const result = convertStorage(deep)
  t.equal(result.markdown, 'deep text\n')
  t.match(result.warnings, [/nesting deeper than/])
  t.throws(() => convertStorage('x'.repeat(2048), { maxBytes: 1024 }), ConversionError)
})

t.test('a 400×8 table converts completely (linear cost)', async (t) => {
  const row = (tag: string, r: number) =>
    `<tr>${Array.from({ length: 8 }, (_, c) => `<${tag}><p>r${r}c${c}</p></${tag}>`).join('')}</tr>`
  const html = `<table><colgroup><col/></colgroup><tbody>${row('th', 0)}${Array.from({ length: 400 }, (_, r) => row('td', r + 1)).join('')}</tbody></table>`
  const out = md(html)
  t.equal(out.split('\n').filter(Boolean).length, 402)
  t.match(out, /\| r400c0 \| r400c1 \|/)
})

t.test('empty line breaks and bold in headings leave no marks', async (t) => {
  t.equal(
    md('<h2><strong>Goal</strong></h2><p><br/></p><p>end of line<br/></p><p>x</p>'),
    '## Goal\n\nend of line\n\nx\n',
  )
  const code =
    '<ac:structured-macro ac:name="code"><ac:plain-text-body><![CDATA[keep \\\n\nthis\\]]></ac:plain-text-body></ac:structured-macro>'
  t.equal(md(code), '```\nkeep \\\n\nthis\\\n```\n', 'code keeps its backslashes')
})

t.test('found by the fixture sweep', async (t) => {
  t.equal(md('<h3><br />2. Title</h3>'), '### 2\\. Title\n', 'a line break in a heading is a space')
  t.equal(
    md('<p><code><span><ac:link><ri:page ri:content-title="T"/></ac:link></span></code></p>', {
      spaceKey: 'E',
    }),
    '[`T`](confluence://page/E/T)\n',
    'a page link inside inline code stays a link',
  )
  t.equal(
    md(
      '<table><tr><td><table><tr><td><ac:link><ri:page ri:content-title="Target"/></ac:link></td><td><p>a</p><p>b</p></td></tr></table></td></tr></table>',
      { spaceKey: 'E' },
    ),
    '| [Target](confluence://page/E/Target) · a b |\n| --- |\n',
    'a nested table keeps its links',
  )
  t.equal(
    md(
      '<ac:structured-macro ac:name="toc-zone"><ac:rich-text-body><p>Zone text</p></ac:rich-text-body></ac:structured-macro>',
    ),
    'Zone text\n',
  )
  t.equal(
    md(
      '<ac:structured-macro ac:name="info"><ac:rich-text-body><ac:structured-macro ac:name="code"><ac:plain-text-body><![CDATA[x   \ny\u00a0z]]></ac:plain-text-body></ac:structured-macro></ac:rich-text-body></ac:structured-macro>',
    ),
    '> **Info:**\n>\n> ```\n> x   \n> y\u00a0z\n> ```\n',
    'code in a panel keeps its whitespace',
  )
  t.equal(
    md(
      '<p><ac:link><ri:page ri:content-title="T"/><ac:plain-text-link-body><![CDATA[this page]] ></ac:plain-text-link-body></ac:link></p><p>after</p>',
      { spaceKey: 'E' },
    ),
    '[this page](confluence://page/E/T)\n\nafter\n',
    'a backup-style `]] >` ends its CDATA',
  )
  t.equal(
    md(
      '<ol><li><p>Click the filter.</p><ac:image><ri:attachment ri:filename="a.png"/></ac:image></li></ol>',
    ),
    '1. Click the filter.\n\n   ![a.png](confluence://attachment//a.png)\n',
  )
  t.equal(
    md('<p>Write &lt;p&gt; for a paragraph, a &lt; b</p>'),
    'Write \\<p> for a paragraph, a < b\n',
  )
})

t.test('edge cases of lists, tables, panels and references', async (t) => {
  t.equal(md('<ol start="x"><li>a</li></ol>'), '1. a\n', 'a bad start number counts from 1')
  t.equal(md('<p>a</p><table></table><p>b</p>'), 'a\n\nb\n', 'an empty table leaves nothing')
  t.equal(
    md(
      '<ac:adf-extension><ac:adf-node type="panel"><ac:adf-attribute key="panel-type">custom</ac:adf-attribute><ac:adf-attribute key="panel-icon-text">🚀</ac:adf-attribute><ac:adf-content><p>Go.</p></ac:adf-content></ac:adf-node></ac:adf-extension>',
    ),
    '> 🚀 Go.\n',
  )
  t.equal(
    md(
      '<ac:structured-macro ac:name="view-file"><ac:parameter ac:name="name"><ri:attachment ri:filename="spec.pdf" /></ac:parameter></ac:structured-macro><ac:structured-macro ac:name="view-file"><ac:parameter ac:name="name"><ri:attachment /></ac:parameter></ac:structured-macro>',
    ),
    '[spec.pdf](confluence://attachment//spec.pdf)\n',
    'a macro showing an attachment links to it',
  )
  t.equal(
    md(
      '<ac:structured-macro ac:name="widget"><ac:parameter ac:name="page"><ri:page ri:content-title="Home" ri:space-key="S" /></ac:parameter><ac:parameter ac:name="p2"><ri:page /></ac:parameter><ac:parameter ac:name="p3"><ri:space ri:space-key="S" /></ac:parameter></ac:structured-macro>',
    ),
    '[Home](confluence://page/S/Home)\n',
  )
  t.equal(
    md(
      '<ac:structured-macro ac:name="plantuml"><ac:plain-text-body><![CDATA[A -> B]]></ac:plain-text-body></ac:structured-macro><ac:structured-macro ac:name="unknown-plain"><ac:plain-text-body><![CDATA[text body]]></ac:plain-text-body></ac:structured-macro><ac:structured-macro ac:name="unknown-empty"><ac:plain-text-body><![CDATA[  ]]></ac:plain-text-body></ac:structured-macro>',
    ),
    '```plantuml\nA -> B\n```\n\n```\ntext body\n```\n',
  )
  t.equal(
    md(
      '<p><ac:structured-macro ac:name="mathinline"><ac:parameter ac:name="body">x^2</ac:parameter></ac:structured-macro></p><ac:structured-macro ac:name="markdown"><ac:plain-text-body><![CDATA[*kept* as written]]></ac:plain-text-body></ac:structured-macro>',
    ),
    '`$x^2$`\n\n*kept* as written\n',
  )
  t.equal(
    md(
      '<p><ac:link><ri:content-entity ri:content-id="99" /></ac:link> <ac:link><ri:blog-post ri:content-title="News" ri:posting-day="2024/01/01" /></ac:link></p>',
      { baseUrl: 'https://w.example.com', spaceKey: 'S' },
    ),
    '[content 99](https://w.example.com/pages/viewpage.action?pageId=99) [News](https://w.example.com/display/S/News)\n',
  )
  t.equal(
    md('<p><ac:link><ri:space ri:space-key="OPS" /></ac:link></p>', {
      baseUrl: 'https://w.example.com',
    }),
    '[OPS](https://w.example.com/display/OPS)\n',
  )
  t.equal(
    md('<p><ac:link><ri:content-entity ri:content-id="7" /></ac:link></p>'),
    '[content 7](confluence://content/7)\n',
  )
  t.equal(
    md('<p><ac:link><ri:user ri:account-id="u1" /></ac:link> <ri:user ri:userkey="k2" /></p>', {
      resolveUser: () => ({ displayName: 'Bo', url: 'https://w.example.com/u' }),
    }),
    '[@Bo](https://w.example.com/u) [@Bo](https://w.example.com/u)\n',
  )
  t.equal(
    md('<p><ac:link><ri:unknown-thing /></ac:link></p>'),
    '',
    'a link to nothing known leaves nothing',
  )
})

t.test('if the markdown pass fails, the page is kept as plain text with a warning', async (t) => {
  const real = await import('../../../services/worker/src/convert/markdown.ts')
  const { convertStorage: convert } = await t.mockImport<
    typeof import('../../../services/worker/src/convert/index.ts')
  >('../../../services/worker/src/convert/index.ts', {
    '../../../services/worker/src/convert/markdown.ts': {
      ...real,
      toMarkdown: () => {
        throw new Error('boom')
      },
    },
  })
  const result = convert(
    '<p>Hello <strong>there</strong></p><ac:structured-macro ac:name="code"><ac:plain-text-body><![CDATA[x < y]]></ac:plain-text-body></ac:structured-macro>',
  )
  t.equal(result.markdown, 'Hello therex < y\n')
  t.match(result.warnings, [/converted as plain text: boom/])
})

t.test('elements missing their attributes or bodies degrade quietly', async (t) => {
  const cases: Array<[string, string]> = [
    ['<script>alert(1)</script><style>p{}</style><p>kept</p>', 'kept\n'],
    ['<p><time>2024-01-02</time></p>', '2024-01-02\n'],
    ['<br/>top<h2>a<br/>b</h2>', 'top\n\n## a b\n'],
    [
      '<ac:parameter ac:name="x">p</ac:parameter><ac:default-parameter>d</ac:default-parameter><p>body</p>',
      'body\n',
    ],
    ['<ac:structured-macro ac:name="info" />', '> **Info:**\n'],
    ['<ac:structured-macro ac:name="code">raw text</ac:structured-macro>', '```\nraw text\n```\n'],
    [
      '<p><ac:structured-macro ac:name="mathinline"><ac:plain-text-body><![CDATA[y]]></ac:plain-text-body></ac:structured-macro> <ac:structured-macro ac:name="mathinline" /></p>',
      '`$y$` `$$`\n',
    ],
    [
      '<ac:structured-macro ac:name="expand"><ac:rich-text-body><p>Hidden.</p></ac:rich-text-body></ac:structured-macro>',
      '**Details**\n\nHidden.\n',
    ],
    [
      '<ac:adf-extension><ac:adf-node type="panel"><ac:adf-content><p>Plain.</p></ac:adf-content></ac:adf-node></ac:adf-extension>',
      '> **Info:** Plain.\n',
    ],
    [
      '<ac:adf-extension><ac:adf-node type="panel"><ac:adf-attribute key="panel-type">odd</ac:adf-attribute><ac:adf-content><p>X.</p></ac:adf-content></ac:adf-node></ac:adf-extension>',
      '> **odd:** X.\n',
    ],
    [
      '<ac:adf-extension><ac:adf-node type="rule"><ac:adf-content><p>From content.</p></ac:adf-content></ac:adf-node></ac:adf-extension>',
      'From content.\n',
    ],
    ['<p>a</p><ac:adf-extension><ac:adf-node type="rule" /></ac:adf-extension>', 'a\n'],
    ['<p>a</p><ac:structured-macro ac:name="jira" />', 'a\n'],
    [
      '<ac:task-list><ac:task><ac:task-status>incomplete</ac:task-status></ac:task><ac:task><ac:task-body>parent</ac:task-body><ac:task-list><ac:task><ac:task-status>complete</ac:task-status><ac:task-body>child</ac:task-body></ac:task></ac:task-list></ac:task></ac:task-list>',
      '- [ ]\n- [ ] parent\n  - [x] child\n',
    ],
    [
      '<p>a</p><ac:structured-macro ac:name="include"><ac:parameter ac:name=""><ri:page /></ac:parameter></ac:structured-macro>',
      'a\n',
    ],
    ['<p>a</p><ac:structured-macro ac:name="include" />', 'a\n'],
    [
      '<p><ri:user /> <ri:user ri:username="jdoe" /> <ri:user ri:userkey="k1" /></p>',
      '@unknown-user @jdoe @k1\n',
    ],
    [
      '<p>[<ac:link><ri:page /></ac:link>] [<ac:link><ri:url /></ac:link>]</p>',
      '\\[[](confluence://page//)\\] \\[\\]\n',
    ],
    [
      '<p><ac:link><ri:attachment /></ac:link><ac:link><ri:space /></ac:link><ac:link><ri:content-entity /></ac:link></p>',
      '[](confluence://attachment//)[](confluence://space/)[content](confluence://content/)\n',
    ],
    [
      '<ac:image><ri:attachment /></ac:image><ac:image><ri:url /></ac:image>',
      '![](confluence://attachment//)\n',
    ],
    [
      '<table><caption>Totals</caption><tr><th>a</th></tr></table><table><caption> </caption><tr><td>b</td></tr></table>',
      '_Totals_\n\n| a |\n| --- |\n\n| b |\n| --- |\n',
    ],
    [
      '<table><tr><td><table><tr><th>h1</th><th>h2</th></tr></table></td></tr></table>',
      '| h1 · h2 |\n| --- |\n',
    ],
  ]
  for (const [storage, expected] of cases) t.equal(md(storage), expected, storage)
})

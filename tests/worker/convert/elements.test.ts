import t from 'tap'
import { convertStorage } from '../../../services/worker/src/convert/index.ts'

// Storage elements at their edges (issue 10, item 12: what the mutation run found unguarded):
// comments and CDATA in text, attributes kept and escaped, pretty-printed storage, links and
// images on a base URL with trailing slashes, tasks, lists and tables as Confluence writes them.

const md = (storage: string, options: Parameters<typeof convertStorage>[1] = {}) =>
  convertStorage(storage, options).markdown

t.test('comments vanish and CDATA outside macros is text', async (t) => {
  t.equal(md('<p>a<!-- a comment -->b</p>'), 'ab\n')
  t.equal(md('<!-- leading --><h2>T</h2><!-- trailing -->'), '## T\n')
  t.equal(md('<p>if <![CDATA[a < b && c]]> then</p>'), 'if a < b && c then\n')
})

t.test('elements that only carry metadata leave no text', async (t) => {
  t.equal(md('<head><title>Old title</title></head><p>body</p>'), 'body\n', 'head and title')
  t.equal(md('<title>Stray title</title><p>body</p>'), 'body\n', 'a title in the body')
  t.equal(md('<p>a<script>alert(1)</script><style>p{}</style>b</p>'), 'ab\n', 'script, style')
  t.equal(
    md(
      '<p>a<ac:task-id>7</ac:task-id><ac:task-uuid>u-1</ac:task-uuid>' +
        '<ac:adf-attribute key="k">v</ac:adf-attribute><ac:adf-mark key="border">m</ac:adf-mark>b</p>',
    ),
    'ab\n',
    "Confluence's bookkeeping elements",
  )
})

t.test('links and images written as HTML keep their URL, title and alt text', async (t) => {
  t.equal(
    md('<p><a href="https://x.test/a" title="The A">a</a></p>'),
    '[a](https://x.test/a "The A")\n',
  )
  t.equal(
    md('<p><img src="https://x.test/i.png" alt="An image" title="Hover"/></p>'),
    '![An image](https://x.test/i.png "Hover")\n',
  )
  t.equal(
    md('<p><img src="https://x.test/i.png" alt="say &quot;hi&quot;"/></p>'),
    '![say "hi"](https://x.test/i.png)\n',
    'a quote in an attribute',
  )
  t.equal(
    md('<p><a href="https://x.test/?q=&quot;a&quot;">q</a></p>'),
    '[q](https://x.test/?q="a")\n',
    'a quote in a URL',
  )
})

t.test('a <pre> is a fenced block, its text kept as written', async (t) => {
  t.equal(md('<pre>a  &lt;b&gt;\n  c</pre><p>after</p>'), '```\na  <b>\n  c\n```\n\nafter\n')
})

t.test('bold in a heading adds nothing; other emphasis in a heading stays', async (t) => {
  t.equal(md('<h2><strong>Strong</strong> and <b>bold</b></h2>'), '## Strong and bold\n')
  t.equal(md('<h2><em>Italic</em> heading</h2>'), '## _Italic_ heading\n')
  t.equal(md('<p><b>bold</b> text</p>'), '**bold** text\n', 'bold outside a heading')
  t.equal(md('<strong>top</strong>'), '**top**\n', 'bold with no parent element')
})

t.test('an anchor link in inline code keeps the link', async (t) => {
  t.equal(md('<p><code>see <ac:link ac:anchor="sec"/></code></p>'), '`see` [`sec`](#sec)\n')
})

t.test('list items written as Confluence pretty-prints them stay tight', async (t) => {
  t.equal(
    md('<ul>\n  <li>\n    <p>a</p>\n    <ul>\n      <li><p>b</p></li>\n    </ul>\n  </li>\n</ul>'),
    '- a\n  - b\n',
  )
  t.equal(
    md('<ul><li><p>a</p><ol><li>b</li></ol></li></ul>'),
    '- a\n  1. b\n',
    'an ordered sublist',
  )
  t.equal(md('<ul><li><p>a</p>tail</li></ul>'), '- a\n\n  tail\n', 'text after the paragraph')
})

t.test('links on a base URL with trailing slashes', async (t) => {
  const options = { baseUrl: 'https://acme.test/wiki//', spaceKey: 'ENG', pageId: '42' }
  const link = (target: string) => `<p><ac:link>\n  ${target}\n</ac:link></p>`
  t.equal(
    md(link('<ri:page ri:content-title="Home"/>'), options),
    '[Home](https://acme.test/wiki/display/ENG/Home)\n',
  )
  t.equal(
    md(link('<ri:attachment ri:filename="f.pdf"/>'), options),
    '[f.pdf](https://acme.test/wiki/download/attachments/42/f.pdf)\n',
  )
  t.equal(
    md(link('<ri:space ri:space-key="DOC"/>'), options),
    '[DOC](https://acme.test/wiki/display/DOC)\n',
  )
  t.equal(
    md(link('<ri:content-entity ri:content-id="7"/>'), options),
    '[content 7](https://acme.test/wiki/pages/viewpage.action?pageId=7)\n',
  )
  t.equal(
    md(link('<ri:space ri:space-key="DOC"/>')),
    '[DOC](confluence://space/DOC)\n',
    'a space without a base URL',
  )
  t.equal(
    md(link('<ri:content-entity ri:content-id="7"/>')),
    '[content 7](confluence://content/7)\n',
    'content by id without a base URL',
  )
})

t.test('attachment links need both the base URL and the page id', async (t) => {
  const attachment = '<p><ac:link><ri:attachment ri:filename="f.pdf"/></ac:link></p>'
  t.equal(
    md(attachment, { baseUrl: 'https://acme.test/wiki' }),
    '[f.pdf](confluence://attachment//f.pdf)\n',
  )
  t.equal(md(attachment, { pageId: '42' }), '[f.pdf](confluence://attachment/42/f.pdf)\n')
})

t.test('link text: the body, else the target', async (t) => {
  const page = '<ri:page ri:content-title="Home"/>'
  t.equal(
    md(
      `<p><ac:link>${page}<ac:plain-text-link-body><![CDATA[  ]]></ac:plain-text-link-body></ac:link></p>`,
    ),
    '[Home](confluence://page//Home)\n',
    'a blank body',
  )
  t.equal(
    md(
      `<p><ac:link><ac:plain-text-link-body><![CDATA[go]]></ac:plain-text-link-body>${page}</ac:link></p>`,
    ),
    '[go](confluence://page//Home)\n',
    'the body before the target',
  )
  t.equal(
    md(
      '<p><ac:link ac:anchor="Setup"><ac:plain-text-link-body><![CDATA[see setup]]></ac:plain-text-link-body></ac:link></p>',
    ),
    '[see setup](#Setup)\n',
    'an anchor on this page, with a body',
  )
  t.equal(md('<p>a<ac:link/>b</p>'), 'ab\n', 'a link to nothing')
  t.equal(
    md('<p><ac:link><ri:user ri:username="bob"/></ac:link></p>'),
    '@bob\n',
    'a user without a URL',
  )
})

t.test('images: source, alt text and caption', async (t) => {
  const options = { pageId: '42' }
  const attachment = '<ri:attachment ri:filename="d.png"/>'
  t.equal(
    md(`<ac:image ac:title="The title">${attachment}</ac:image>`, options),
    '![The title](confluence://attachment/42/d.png)\n',
    'the title when there is no alt text',
  )
  t.equal(
    md(
      `<ac:image>${attachment}<ac:caption><p>  A   <strong>big</strong>\n diagram </p></ac:caption></ac:image>`,
      options,
    ),
    '![A big diagram](confluence://attachment/42/d.png) _A **big** diagram_\n',
    'the caption, its whitespace collapsed',
  )
  // (Its alt text runs the paragraphs together, "OneTwo": a known flaw, not asserted here.)
  t.match(
    md(`<ac:image>${attachment}<ac:caption><p>One</p><p>Two</p></ac:caption></ac:image>`, options),
    / _One Two_\n$/,
    'a caption of two paragraphs',
  )
  t.equal(md('<p>a<ac:image ac:alt="nothing"/>b</p>'), 'ab\n', 'an image with no source')
})

t.test('tasks: status and body as Confluence pretty-prints them', async (t) => {
  t.equal(
    md(
      '<ac:task-list>\n<ac:task>\n<ac:task-id>1</ac:task-id>\n<ac:task-status> complete </ac:task-status>\n' +
        '<ac:task-body>  done <time datetime="2024-01-02"/>  </ac:task-body>\n</ac:task>\n' +
        '<ac:task>\n<ac:task-status>incomplete</ac:task-status>\n<ac:task-body>open</ac:task-body>\n</ac:task>\n</ac:task-list>',
    ),
    '- [x] done (due 2024-01-02)\n- [ ] open\n',
  )
  t.equal(
    md(
      '<ac:task-list><p>stray</p><ac:task><ac:task-body>only</ac:task-body></ac:task></ac:task-list>',
    ),
    '- [ ] only\n',
    'only tasks are items',
  )
})

t.test('status macros: the title, else the colour, else STATUS', async (t) => {
  const status = (params: string) =>
    `<p>state <ac:structured-macro ac:name="status">${params}</ac:structured-macro></p>`
  t.equal(
    md(status('<ac:parameter ac:name="title"> In progress </ac:parameter>')),
    'state [In progress]\n',
  )
  t.equal(md(status('<ac:parameter ac:name="colour">Green</ac:parameter>')), 'state [Green]\n')
  t.equal(md(status('')), 'state [STATUS]\n')
})

t.test('panels: titles trimmed, bodies that are not a paragraph', async (t) => {
  t.equal(
    md(
      '<ac:structured-macro ac:name="expand"><ac:parameter ac:name="title">  More  </ac:parameter>' +
        '<ac:rich-text-body><p>hidden</p></ac:rich-text-body></ac:structured-macro>',
    ),
    '**More**\n\nhidden\n',
  )
  t.equal(
    md(
      '<ac:structured-macro ac:name="panel"><ac:rich-text-body><ul><li>a</li></ul></ac:rich-text-body></ac:structured-macro>',
    ),
    '> - a\n',
    'a panel without a label around a list',
  )
  t.equal(
    md(
      '<ac:adf-extension><ac:adf-node type="panel">\n' +
        '<ac:adf-attribute key="panel-type"> note </ac:adf-attribute>\n' +
        '<ac:adf-content><p>body</p></ac:adf-content></ac:adf-node></ac:adf-extension>',
    ),
    '> **Note:** body\n',
    'an ADF panel type with spaces around it',
  )
})

t.test('macros point at pages through their parameters, within limits', async (t) => {
  const page = '<ri:page ri:content-title="Home" ri:space-key="DOC"/>'
  const wrap = (levels: number) =>
    '<ac:parameter ac:name="">'.repeat(levels) + page + '</ac:parameter>'.repeat(levels)
  const include = (inner: string) =>
    `<ac:structured-macro ac:name="include">${inner}</ac:structured-macro>`
  t.equal(
    md(include(wrap(3))),
    'Included from [Home](confluence://page/DOC/Home)\n',
    'three parameters deep',
  )
  t.equal(md(include(wrap(4))), '', 'four parameters deep is not looked into')
  t.equal(
    md(
      '<ac:structured-macro ac:name="excerpt-include">' +
        '<ac:parameter ac:name="name">intro</ac:parameter><ac:parameter ac:name="nopanel">true</ac:parameter>' +
        `<ac:parameter ac:name=""><ac:link>${page}</ac:link></ac:parameter></ac:structured-macro>`,
    ),
    'Excerpt from [Home](confluence://page/DOC/Home)\n',
    'the page after other parameters',
  )
  t.equal(
    md(
      '<ac:structured-macro ac:name="view-file"><ac:default-parameter><ri:attachment ri:filename="a.pdf"/></ac:default-parameter>' +
        '<ac:plain-text-body><![CDATA[]]></ac:plain-text-body></ac:structured-macro>',
      { pageId: '42' },
    ),
    '[a.pdf](confluence://attachment/42/a.pdf)\n',
    'an attachment in the default parameter of another macro',
  )
})

t.test('tables: sections, caption and colgroup as Confluence writes them', async (t) => {
  t.equal(
    md(
      '<table><thead><tr><th>h</th></tr></thead><tbody><tr><td>b</td></tr></tbody><tfoot><tr><td>f</td></tr></tfoot></table>',
    ),
    '| h |\n| --- |\n| b |\n| f |\n',
  )
  t.equal(
    md(
      '<table><caption>Cap</caption><colgroup><col/></colgroup><tbody><tr><th>h</th></tr></tbody></table>',
    ),
    '_Cap_\n\n| h |\n| --- |\n',
    'a caption, then the colgroup',
  )
  t.equal(
    md('<table><caption> </caption><tbody><tr><th>h</th></tr></tbody></table>'),
    '| h |\n| --- |\n',
    'a blank caption',
  )
})

t.test('layouts: every level is a block of its own', async (t) => {
  for (const element of ['ac:layout', 'ac:layout-section', 'ac:layout-cell']) {
    t.equal(
      md(`<${element}>left</${element}><${element}>right</${element}>`),
      'left\n\nright\n',
      element,
    )
  }
})

t.test('tag and attribute names are read in any case', async (t) => {
  t.equal(
    md(
      '<P>Hello <STRONG>x</STRONG> <AC:LINK><RI:PAGE RI:CONTENT-TITLE="Home"/></AC:LINK></P>' +
        '<PRE>a  b</PRE><OL START="3"><LI>c</LI></OL>',
    ),
    'Hello **x** [Home](confluence://page//Home)\n\n```\na  b\n```\n\n3. c\n',
  )
})

t.test('a table in a table cell is flattened to its words, whatever its blocks', async (t) => {
  t.equal(
    md(
      '<table><tr><th>o</th></tr><tr><td><table><tr><td><h2>Head</h2><p>text</p></td>' +
        '<td><ol start="3"><li>x</li><li>y</li></ol></td></tr></table></td></tr></table>',
    ),
    '| o |\n| --- |\n| Head text · x y |\n',
  )
})

t.test('a comment in a macro parameter is no text', async (t) => {
  t.equal(
    md(
      '<p>state <ac:structured-macro ac:name="status"><ac:parameter ac:name="title">Done<!-- c --></ac:parameter></ac:structured-macro></p>',
    ),
    'state [Done]\n',
  )
})

import t from 'tap'
import { convertStorage } from '../../../services/worker/src/convert/index.ts'
import { NAVIGATION_MACROS } from '../../../services/worker/src/convert/storage.ts'

// Macros, one table per family (issue 10, item 12: the mutation run found most of the names in
// these families unguarded): what each Confluence macro becomes in the markdown.

const md = (storage: string, options: Parameters<typeof convertStorage>[1] = {}) =>
  convertStorage(storage, options).markdown

const macro = (name: string, inner: string, element = 'ac:structured-macro') =>
  `<${element} ac:name="${name}">${inner}</${element}>`
const parameter = (name: string, value: string) =>
  `<ac:parameter ac:name="${name}">${value}</ac:parameter>`
const rich = (html: string) => `<ac:rich-text-body>${html}</ac:rich-text-body>`
const plain = (text: string) => `<ac:plain-text-body><![CDATA[${text}]]></ac:plain-text-body>`

t.test('navigation macros leave nothing, even with a title or a page parameter', async (t) => {
  // Written out rather than read from the set: a name dropped from it must fail here.
  const navigation = [
    'toc',
    'children',
    'pagetree',
    'pagetreesearch',
    'rw-pagetree',
    'livesearch',
    'search',
    'recently-updated',
    'recently-updated-dashboard',
    'contentbylabel',
    'content-by-label',
    'blog-posts',
    'listlabels',
    'popular-labels',
    'related-labels',
    'labels-list',
    'content-report-table',
    'tasks-report-macro',
    'outgoing-links',
    'incoming-links',
    'spaces',
    'space-details',
    'index',
    'navmap',
    'page-index',
    'create-from-template',
    'create-space-button',
    'favpages',
    'pagetree-search',
    'anchor',
    'viewport-redirect',
    'viewport-url-redirect',
    'redirect',
  ]
  t.same([...NAVIGATION_MACROS].sort(), [...navigation].sort(), 'the set is the list above')
  const params =
    parameter('title', 'Contents') + parameter('root', '<ri:page ri:content-title="Home"/>')
  for (const name of navigation) {
    t.equal(md(`<p>before</p>${macro(name, params)}<p>after</p>`), 'before\n\nafter\n', name)
    t.equal(
      md(`<p>before</p>${macro(name.toUpperCase(), params)}<p>after</p>`),
      'before\n\nafter\n',
      `${name}, upper case`,
    )
  }
  // The legacy (Server 3.x) element form.
  t.equal(md(`<p>x</p>${macro('toc', params, 'ac:macro')}`), 'x\n', 'ac:macro toc')
  // Any other macro keeps its title and what it points at.
  t.equal(
    md(macro('recently-updated-by-me', params)),
    '**Contents**\n\n[Home](confluence://page//Home)\n',
    'a macro that is not a navigation macro',
  )
})

t.test('panel macros are labelled blockquotes', async (t) => {
  const panels: Array<[string, string]> = [
    ['info', '> **Info:** body\n'],
    ['note', '> **Note:** body\n'],
    ['tip', '> **Tip:** body\n'],
    ['warning', '> **Warning:** body\n'],
    ['error', '> **Error:** body\n'],
    ['success', '> **Success:** body\n'],
    ['alert', '> **Alert:** body\n'],
    ['auimessage', '> **Note:** body\n'],
    ['panel', '> body\n'],
  ]
  for (const [name, expected] of panels) {
    t.equal(md(macro(name, rich('<p>body</p>'))), expected, name)
    t.equal(md(macro(name, rich('<p>body</p>'), 'ac:macro')), expected, `${name} (ac:macro)`)
  }
  t.equal(
    md(macro('error', parameter('title', 'Broken') + rich('<p>body</p>'))),
    '> **Error: Broken:** body\n',
    'a title follows the kind',
  )
})

t.test('Cloud (ADF) panels are labelled by their panel type', async (t) => {
  const adf = (type: string) =>
    '<ac:adf-extension><ac:adf-node type="panel">' +
    `<ac:adf-attribute key="panel-type">${type}</ac:adf-attribute>` +
    '<ac:adf-content><p>body</p></ac:adf-content></ac:adf-node></ac:adf-extension>'
  const panels: Array<[string, string]> = [
    ['info', '> **Info:** body\n'],
    ['note', '> **Note:** body\n'],
    ['warning', '> **Warning:** body\n'],
    ['error', '> **Error:** body\n'],
    ['success', '> **Success:** body\n'],
    ['tip', '> **Tip:** body\n'],
    ['custom', '> body\n'],
    ['shiny', '> **shiny:** body\n'],
  ]
  for (const [type, expected] of panels) t.equal(md(adf(type)), expected, type)
})

t.test('code macros of every name are fenced; only `code` has a language', async (t) => {
  for (const name of ['code', 'noformat', 'paste-code-macro', 'sourcecode']) {
    const out = md(macro(name, parameter('language', 'js') + plain('a  <b>\n\n\nc  ')))
    const info = name === 'code' ? 'js' : ''
    t.equal(out, `\`\`\`${info}\na  <b>\n\n\nc  \n\`\`\`\n`, name)
  }
})

t.test('a legacy code macro with its body as plain text is fenced too', async (t) => {
  // Old Server pages: <ac:macro> with the code written straight in it, no plain-text-body.
  for (const name of ['code', 'noformat', 'paste-code-macro', 'sourcecode']) {
    t.equal(md(macro(name, 'a  &lt;b&gt;\n  c', 'ac:macro')), '```\na  <b>\n  c\n```\n', name)
  }
})

t.test('diagram and math macros are fenced with their language', async (t) => {
  const diagrams: Array<[string, string]> = [
    ['mermaid', 'mermaid'],
    ['mermaid-cloud', 'mermaid'],
    ['mermaid-macro', 'mermaid'],
    ['plantuml', 'plantuml'],
    ['plantumlcloud', 'plantuml'],
    ['mathblock', 'math'],
    ['easy-math-block', 'math'],
    ['latex', 'latex'],
  ]
  for (const [name, language] of diagrams) {
    t.equal(md(macro(name, plain('A -> B'))), `\`\`\`${language}\nA -> B\n\`\`\`\n`, name)
  }
})

t.test('inline math macros are inline code between dollars', async (t) => {
  for (const name of ['mathinline', 'eazy-math-inline']) {
    t.equal(md(`<p>area ${macro(name, parameter('body', 'x^2'))}</p>`), 'area `$x^2$`\n', name)
  }
})

t.test('jira macros: a key is a link to the issue, a query is shown as code', async (t) => {
  const jiraBaseUrl = 'https://acme.atlassian.net'
  for (const name of ['jira', 'jiraissues']) {
    t.equal(
      md(macro(name, parameter('key', 'ENG-1')), { jiraBaseUrl }),
      '[ENG-1](https://acme.atlassian.net/browse/ENG-1)\n',
      `${name} key`,
    )
    t.equal(
      md(macro(name, parameter('jqlQuery', 'project = ENG')), { jiraBaseUrl }),
      'Jira issues: `project = ENG`\n',
      `${name} query`,
    )
  }
  t.equal(
    md(macro('jira', parameter('key', 'ENG-1')), { jiraBaseUrl: 'https://acme.atlassian.net//' }),
    '[ENG-1](https://acme.atlassian.net/browse/ENG-1)\n',
    'trailing slashes of the base URL are dropped',
  )
  t.equal(md(macro('jira', parameter('key', 'ENG-1'))), 'ENG-1\n', 'no Jira URL: the key')
  t.equal(md(macro('jira', parameter('server', 'System JIRA'))), '', 'neither key nor query')
})

t.test('include and excerpt-include link to the page they show', async (t) => {
  // Pretty-printed storage (space between the elements), as XML exports write it.
  const ref = (title: string) =>
    '\n  <ac:parameter ac:name="">\n    <ac:link>\n      ' +
    `<ri:page ri:content-title="${title}" ri:space-key="DOC"/>\n    </ac:link>\n  </ac:parameter>\n`
  t.equal(md(macro('include', ref('Home'))), 'Included from [Home](confluence://page/DOC/Home)\n')
  t.equal(
    md(macro('excerpt-include', ref('Home'))),
    'Excerpt from [Home](confluence://page/DOC/Home)\n',
  )
  t.equal(
    md(
      macro(
        'include',
        '<ac:default-parameter><ac:link><ri:page ri:content-title="Legacy"/></ac:link></ac:default-parameter>',
        'ac:macro',
      ),
      { spaceKey: 'ENG' },
    ),
    'Included from [Legacy](confluence://page/ENG/Legacy)\n',
    'a legacy macro names its page in the default parameter',
  )
  t.equal(
    md(
      macro(
        'include',
        '<ac:parameter ac:name=""><ri:blog-post ri:content-title="News" ri:posting-day="2024/01/02"/></ac:parameter>',
      ),
    ),
    'Included from [News](confluence://page//News)\n',
    'a blog post',
  )
  t.equal(md(macro('excerpt', rich('<p>kept</p>'))), 'kept\n', 'an excerpt macro is its body')
  t.equal(
    md(macro('include-children', ref('Home'))),
    '',
    'another macro with a page parameter that is not a link target stays quiet',
  )
})

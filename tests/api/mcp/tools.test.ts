import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import t from 'tap'
import { READER_KEY } from '../../helpers/api.ts'
import { ENG_KEY, groundedRig, type Json } from '../../helpers/grounded.ts'

// The MCP server as an assistant meets it: the SDK's own client over Streamable HTTP on a real
// socket, an index a real worker built from a small ENG/OPS space, the Ollama stand-in as the
// model. (The SDK is a dependency of the api: the tests import it from there.)

type Body = Record<string, unknown>
const lastMessage = (body: Body) =>
  ((body.messages ?? []) as Array<{ content: string }>).at(-1)?.content ?? ''

/** The model cites the first excerpt it was given (and answers anything else with its tokens). */
const respond = (body: Body) =>
  /<excerpt-[0-9a-f]+ n="1">/.test(lastMessage(body))
    ? ['Roll back with ', '`helm rollback billing` [1].']
    : undefined

async function connect(t: { teardown(fn: () => unknown): void }, url: string, key: string) {
  const client = new Client({ name: 'confluence-bot-tests', version: '1.0.0' })
  const transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  })
  await client.connect(transport)
  t.teardown(() => client.close())
  return client
}

type ToolResult = {
  content: Array<{ type: string; text: string }>
  structuredContent?: Json
  isError?: boolean
}

const call = async (client: Client, name: string, args: Record<string, unknown>) =>
  (await client.callTool({ name, arguments: args })) as ToolResult

t.test('the MCP server, through the SDK client', async (t) => {
  const { url, rig } = await groundedRig(t)
  rig.ollama.options.respond = respond
  const client = await connect(t, url, READER_KEY)

  t.test('lists its three tools, each with a schema and a description', async (t) => {
    const { tools } = await client.listTools()
    t.same(tools.map((tool) => tool.name).sort(), ['ask', 'get_page', 'search'])
    const byName = Object.fromEntries(tools.map((tool) => [tool.name, tool]))
    t.match(byName.search, {
      description: /Search the team's Confluence pages[\s\S]*get_page/,
      inputSchema: {
        type: 'object',
        properties: {
          query: { type: 'string' },
          spaces: { type: 'array' },
          top_k: { type: 'integer' },
        },
        required: ['query'],
      },
      outputSchema: { properties: { results: { type: 'array' } } },
      annotations: { readOnlyHint: true },
    })
    t.match(byName.ask, {
      description: /numbered citations/,
      inputSchema: {
        properties: { question: Object, spaces: Object, model: Object },
        required: ['question'],
      },
      outputSchema: { properties: { answer: Object, sources: Object } },
    })
    t.match(byName.get_page, {
      description: /exactly one of page_id and url/,
      inputSchema: { properties: { page_id: { type: 'string' }, url: { type: 'string' } } },
      outputSchema: { properties: { markdown: { type: 'string' } } },
    })
    t.notOk(byName.get_page?.inputSchema.required, 'neither is required alone')
    t.match(client.getInstructions(), /search[\s\S]*ask[\s\S]*get_page/)
  })

  t.test('search finds the rollback section, with its URL', async (t) => {
    const found = await call(client, 'search', {
      query: 'roll back the billing deployment',
      top_k: 3,
    })
    t.notOk(found.isError)
    const hits = found.structuredContent?.results as Json[]
    t.ok(hits.length >= 1 && hits.length <= 3)
    t.match(hits[0], {
      title: 'Deploying the billing service',
      breadcrumb: /Deploying the billing service/,
      url: /\/pages\/101#/,
      space: 'ENG',
      page_id: '101',
      updated_at: '2024-06-10T08:00:00.000Z',
      score: Number,
      snippet: /roll back/,
    })
    t.equal(found.structuredContent?.mode, 'hybrid')
    const text = found.content[0]?.text as string
    t.match(text, /^1\. Deploying the billing service \(/)
    t.ok(text.includes(hits[0]?.url), 'the text names the URL too')

    t.notOk('fallback' in (found.structuredContent as Json))

    const models = rig.ollama.options.models
    rig.ollama.options.models = models.filter((m) => !/embed/.test(m.name))
    const keywords = await call(client, 'search', { query: 'helm rollback billing' })
    rig.ollama.options.models = models
    t.match(keywords.structuredContent, {
      mode: 'keyword',
      fallback: /the embedding model .* (failed|cannot be reached)/,
      results: [{ page_id: '101' }],
    })
    t.match(
      keywords.content[0]?.text,
      /^Keyword search only \(the embedding model .*\)\.\n\n1\. Deploying/,
    )

    const none = await call(client, 'search', { query: 'roll back', spaces: ['NOPE'] })
    t.same(none.structuredContent?.results, [])
    t.match(none.content[0]?.text, /No indexed page this key may read matches "roll back"/)
  })

  t.test('ask answers with numbered citations and its sources', async (t) => {
    const answered = await call(client, 'ask', {
      question: 'How do I roll back the billing deployment?',
    })
    t.notOk(answered.isError, String(answered.content[0]?.text))
    const structured = answered.structuredContent as Json
    t.equal(structured.answer, 'Roll back with `helm rollback billing` [1].')
    t.equal(structured.model, 'llama3.2')
    t.match(structured.sources[0], {
      n: 1,
      title: 'Deploying the billing service',
      url: /101/,
      space: 'ENG',
      page_id: '101',
      cited: true,
    })
    t.ok(
      (structured.sources as Json[]).slice(1).every((s) => s.cited === false),
      'only [1] is cited',
    )
    const text = answered.content[0]?.text as string
    t.match(
      text,
      /^Roll back with `helm rollback billing` \[1\]\.\n\nSources:\n\[1\] Deploying the billing service: http/,
    )

    rig.ollama.options.respond = () => ['Helm can do it.']
    t.teardown(() => {
      rig.ollama.options.respond = respond
    })
    const uncited = await call(client, 'ask', {
      question: 'How do I roll back the billing deployment?',
    })
    t.match(uncited.structuredContent?.sources, [{ n: 1, cited: false }])
    t.match(
      uncited.content[0]?.text,
      /^Helm can do it\.\n\nSources:\n\[1\] Deploying the billing service: http\S+ \(not cited\)/,
    )

    const nothing = await call(client, 'ask', {
      question: 'Who won the 1998 world cup?',
      spaces: ['NOPE'],
    })
    t.notOk(nothing.isError)
    t.match(nothing.structuredContent, { answer: /hold nothing/, sources: [] })
    t.equal(nothing.content[0]?.text, nothing.structuredContent?.answer, 'no sources to list')
  })

  t.test('ask: a model Ollama does not have is a tool error naming it', async (t) => {
    const failed = await call(client, 'ask', {
      question: 'How do I roll back?',
      model: 'no-such-model',
    })
    t.equal(failed.isError, true)
    t.match(failed.content[0]?.text, /no-such-model/)
  })

  t.test('get_page returns the page as markdown, by id and by URL', async (t) => {
    const byId = await call(client, 'get_page', { page_id: '101' })
    t.notOk(byId.isError)
    t.match(byId.structuredContent, {
      page_id: '101',
      title: 'Deploying the billing service',
      url: /\/pages\/101$/,
      space: 'ENG',
      breadcrumb: /Deploying the billing service$/,
      updated_at: '2024-06-10T08:00:00.000Z',
      labels: ['runbook'],
    })
    const markdown = byId.structuredContent?.markdown as string
    t.match(markdown, /helm upgrade billing/)
    t.match(markdown, /## Rollback[\s\S]*helm rollback billing/)
    t.ok(markdown.indexOf('helm upgrade') < markdown.indexOf('helm rollback'), 'in page order')
    t.notOk(byId.structuredContent?.url.includes('#'), 'the page URL, not a section')
    t.match(
      byId.content[0]?.text,
      /^# Deploying the billing service\n\nURL: http\S+\nSpace: ENG\nUpdated: /,
    )

    const hit = (await call(client, 'search', { query: 'helm rollback billing' })).structuredContent
      ?.results[0] as Json
    const byUrl = await call(client, 'get_page', { url: hit.url })
    t.equal(byUrl.structuredContent?.page_id, '101', 'a section URL names its page')
    t.equal(byUrl.structuredContent?.markdown, markdown)

    const missing = await call(client, 'get_page', { page_id: '999' })
    t.equal(missing.isError, true)
    t.equal(
      missing.content[0]?.text,
      'No indexed page with id 999 in the spaces this API key may read.',
    )
    const nowhere = await call(client, 'get_page', { url: 'https://nowhere.example/x' })
    t.equal(nowhere.isError, true)
    t.match(nowhere.content[0]?.text, /No indexed page at https:\/\/nowhere\.example\/x in/)
  })

  t.test('bad arguments: an error the client surfaces, naming the field', async (t) => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['search', {}, /query/],
      ['search', { query: '   ' }, /query/],
      ['search', { query: 'x', top_k: 0 }, /top_k/],
      ['search', { query: 'x', top_k: 1.5 }, /top_k/],
      ['search', { query: 'x', spaces: [] }, /spaces/],
      ['ask', { question: 42 }, /question/],
      ['get_page', {}, /exactly one of page_id and url/],
      ['get_page', { page_id: '101', url: 'https://x' }, /exactly one of page_id and url/],
    ]
    for (const [name, args, message] of cases) {
      const failed = await call(client, name, args)
      t.equal(failed.isError, true, `${name} ${JSON.stringify(args)}`)
      t.match(failed.content[0]?.text, /Input validation error/)
      t.match(failed.content[0]?.text, message)
    }
    const unknown = await call(client, 'delete_everything', {})
    t.equal(unknown.isError, true)
    t.match(unknown.content[0]?.text, /Tool delete_everything not found/)
  })

  t.test('a key limited to ENG never sees an OPS chunk, through any tool', async (t) => {
    const eng = await connect(t, url, ENG_KEY)
    const allFound = await call(client, 'search', { query: 'on-call rotation Opsgenie paging' })
    const everyHit = (allFound.structuredContent as Json).results as Json[]
    t.ok(
      everyHit.some((h) => h.space === 'OPS'),
      'a reader of every space finds the OPS page',
    )
    for (const spaces of [undefined, ['OPS'], ['ops', 'ENG']]) {
      const found = await call(eng, 'search', { query: 'on-call rotation Opsgenie paging', spaces })
      const hits = found.structuredContent?.results as Json[]
      t.ok(
        hits.every((h) => h.space === 'ENG'),
        `search ${JSON.stringify(spaces)}: ENG only`,
      )
      t.notMatch(found.content[0]?.text, /space OPS|On-call rotation|Incident severity/)
    }
    const own = await call(eng, 'search', { query: 'helm rollback billing' })
    t.equal((own.structuredContent as Json).results[0]?.page_id, '101', 'and ENG pages it finds')

    rig.ollama.options.respond = () => ['The rotation changes on Mondays [1].']
    t.teardown(() => {
      rig.ollama.options.respond = respond
    })
    for (const spaces of [undefined, ['OPS']]) {
      const before = rig.ollama.requests.length
      const asked = await call(eng, 'ask', {
        question: 'When does the on-call rotation change?',
        spaces,
      })
      t.notOk(asked.isError, String(asked.content[0]?.text))
      const sources = asked.structuredContent?.sources as Json[]
      t.ok(
        sources.every((s) => s.space === 'ENG'),
        `ask ${JSON.stringify(spaces)}: ENG sources only`,
      )
      const prompts = rig.ollama.requests.slice(before).map((r) => JSON.stringify(r.body))
      t.notOk(
        prompts.some((p) => /Opsgenie|On-call rotation|Incident severity/.test(p)),
        'no OPS excerpt reached the model',
      )
    }

    const page = await call(client, 'get_page', { page_id: '201' })
    t.equal(page.structuredContent?.space, 'OPS', 'the OPS page exists')
    const refused = await call(eng, 'get_page', { page_id: '201' })
    t.equal(refused.isError, true)
    t.equal(
      refused.content[0]?.text,
      'No indexed page with id 201 in the spaces this API key may read.',
    )
    const byUrl = await call(eng, 'get_page', { url: page.structuredContent?.url })
    t.equal(byUrl.isError, true)
    t.notMatch(JSON.stringify(byUrl), /Opsgenie/)
    t.equal((await call(eng, 'get_page', { page_id: '101' })).structuredContent?.space, 'ENG')
  })
})

import t from 'tap'
import { buildTestApp, listenTestApp } from '../helpers/api.ts'
import { launchChromium, noChromium } from '../helpers/browser.ts'

// Every documented operation: the gateway (chat, models, health, admin) and ingestion
// (sources and their jobs), as the routes under services/api/src/routes declare them.
const GATEWAY = [
  'POST /api/chat',
  'POST /api/generate',
  'GET /api/models',
  'POST /api/pull',
  'POST /api/models/import',
  'GET /api/health',
  'GET /api/health/live',
  'GET /admin/config',
  'GET /api/conversations',
  'GET /api/conversations/{id}',
  'DELETE /api/conversations/{id}',
  'POST /api/search',
  'POST /mcp',
  'GET /api/me',
  'GET /api/spaces',
]
const INGESTION = [
  'POST /api/sources',
  'GET /api/sources',
  'GET /api/sources/{id}',
  'DELETE /api/sources/{id}',
  'POST /api/sources/{id}/sync',
  'POST /api/sources/export',
  'PUT /api/sources/{id}/export',
  'GET /api/jobs',
  'GET /api/jobs/{id}',
]
// The OpenAI-compatible API (tests/api/openai/docs.test.ts checks its schemas).
const OPENAI = [
  'POST /v1/chat/completions',
  'GET /v1/models',
  'GET /v1/models/{model}',
  'POST /v1/embeddings',
]
// The Ollama-compatible API (tests/api/ollama-compat/statuses.test.ts checks its statuses).
const OLLAMA = [
  'GET /ollama/',
  'GET /ollama/api/version',
  'GET /ollama/api/ps',
  'GET /ollama/api/tags',
  'POST /ollama/api/show',
  'POST /ollama/api/embed',
  'POST /ollama/api/embeddings',
  'POST /ollama/api/chat',
  'POST /ollama/api/generate',
]
const OPERATIONS = [...GATEWAY, ...INGESTION, ...OPENAI, ...OLLAMA]

t.test('the OpenAPI 3 document describes every operation with its schemas', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.match(doc.openapi, /^3\./)
  const found: string[] = []
  for (const [path, item] of Object.entries<Record<string, { tags?: string[] }>>(doc.paths)) {
    for (const method of Object.keys(item)) found.push(`${method.toUpperCase()} ${path}`)
  }
  for (const op of OPERATIONS) t.ok(found.includes(op), `${op} is documented`)
  t.same([...found].sort(), [...OPERATIONS].sort(), 'and nothing else')
  const chat = doc.paths['/api/chat'].post
  t.ok(chat.requestBody.content['application/json'].schema, 'chat has a body schema')
  t.ok(chat.responses['200'].content['application/x-ndjson'], 'chat documents its stream')
  t.ok(chat.responses['400'], 'chat documents its errors')
  t.same(doc.paths['/api/health'].get.security, [], 'health is open')
  t.same(doc.security, [{ bearer: [] }])
  t.equal(doc.components.securitySchemes.bearer.scheme, 'bearer')
  t.ok(doc.components.schemas.Error, 'the error shape is a named schema')
  const limit = doc.paths['/api/jobs'].get.parameters.find(
    (p: { name: string }) => p.name === 'limit',
  )
  t.match(limit, { in: 'query', required: false, schema: { default: 50 } }, 'a default is optional')
  for (const [path, item] of Object.entries<Record<string, { responses: object }>>(doc.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      t.ok('403' in operation.responses, `${method} ${path} documents the Host/Origin 403`)
    }
  }

  // Ingestion: admin operations under the global Bearer requirement, with their schemas.
  const op = (key: string) => {
    const [method, path] = key.split(' ') as [string, string]
    return doc.paths[path][method.toLowerCase()]
  }
  const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` })
  const json = (response: { content: Record<string, { schema: unknown }> }) =>
    response.content['application/json']?.schema as Record<string, unknown>
  for (const key of INGESTION) {
    t.same(op(key).tags, ['sources'], `${key} is tagged sources`)
    t.equal(op(key).security, undefined, `${key} takes the Bearer key`)
    t.match(op(key).summary, /\(admin\)$/, `${key} says it needs an admin key`)
    for (const code of ['401', '403', '503']) {
      t.ok(op(key).responses[code], `${key} documents ${code}`)
    }
  }
  t.ok(doc.components.schemas.ConfluenceSource, 'a source is a named schema')
  t.ok(doc.components.schemas.Job, 'a job is a named schema')
  const create = op('POST /api/sources')
  t.match(create.requestBody.content['application/json'].schema, {
    required: ['name', 'kind', 'base_url', 'spaces'],
  })
  t.same(json(create.responses['201']), ref('ConfluenceSource'))
  t.ok(create.responses['409'], 'a taken name is documented')
  t.same(json(op('GET /api/sources').responses['200']).properties, {
    sources: { type: 'array', items: ref('ConfluenceSource') },
  })
  for (const key of [
    'GET /api/sources/{id}',
    'DELETE /api/sources/{id}',
    'POST /api/sources/{id}/sync',
  ]) {
    t.match(op(key).parameters, [{ in: 'path', name: 'id', required: true }], `${key} takes an id`)
    t.ok(op(key).responses['404'], `${key} documents an unknown source`)
  }
  t.same(json(op('GET /api/sources/{id}').responses['200']), ref('ConfluenceSource'))
  for (const key of ['DELETE /api/sources/{id}', 'POST /api/sources/{id}/sync']) {
    t.match(json(op(key).responses['202']), { title: 'JobAccepted', required: ['job_id'] })
  }
  t.match(op('POST /api/sources/{id}/sync').requestBody.content['application/json'].schema, {
    title: 'SyncRequest',
    properties: { full: { type: 'boolean' }, force: { type: 'boolean' } },
  })
  const sync = op('POST /api/sources/{id}/sync')
  t.equal(sync.requestBody.required, false, 'a sync may be started with no body')
  t.equal(sync['x-optional-body'], undefined, 'the marker stays out of the document')
  t.equal(create.requestBody.required, true, 'other bodies stay required')
  const upload = op('POST /api/sources/export')
  t.match(upload.parameters, [{ in: 'query', name: 'name', required: true }])
  t.equal(upload.requestBody.required, true)
  for (const type of [
    'application/zip',
    'application/x-zip-compressed',
    'application/octet-stream',
  ])
    t.same(
      upload.requestBody.content[type]?.schema,
      {
        type: 'string',
        format: 'binary',
        description: 'The export zip',
      },
      `the upload takes the zip as ${type}`,
    )
  t.same(json(upload.responses['201']), ref('ConfluenceSource'))
  t.ok(upload.responses['413'], 'an export over the limit is documented')
  t.ok(upload.responses['415'], 'a body that is not a zip is documented')
  t.ok(
    doc.tags.some((tag: { name: string }) => tag.name === 'sources'),
    'the sources tag is described',
  )
  t.match(
    op('GET /api/jobs')
      .parameters.map((p: { in: string; name: string }) => `${p.in} ${p.name}`)
      .sort(),
    ['query limit', 'query source_id'],
  )
  t.same(json(op('GET /api/jobs').responses['200']).properties, {
    jobs: { type: 'array', items: ref('Job') },
  })
  t.same(json(op('GET /api/jobs/{id}').responses['200']), ref('Job'))
  t.ok(op('GET /api/jobs/{id}').responses['404'], 'an unknown job is documented')
})

/** `METHOD /path` of each Swagger UI operation block (runs in the page: no outer names). */
const operationsOf = (blocks: Element[]) =>
  blocks.map((b) => {
    const method = b.querySelector('.opblock-summary-method')?.textContent?.trim() ?? ''
    const path = b.querySelector('.opblock-summary-path')?.getAttribute('data-path') ?? ''
    return `${method} ${path}`
  })

t.test(
  'Swagger UI in a real browser shows every gateway and ingestion operation',
  { skip: noChromium },
  async (t) => {
    const { url } = await listenTestApp(t)
    const browser = await launchChromium(t)
    const page = await browser.newPage()
    await page.goto(`${url}/docs`)
    await page.waitForSelector('.opblock', { timeout: 30_000 })
    const shown = await page.$$eval('.opblock', operationsOf)
    for (const op of OPERATIONS) t.ok(shown.includes(op), `${op} is shown`)
    t.same([...shown].sort(), [...OPERATIONS].sort(), 'each once, and nothing else')
    // The ingestion operations are grouped in a section of their own.
    const sources = await page.$$eval(
      '.opblock-tag-section:has(.opblock-tag[data-tag="sources"]) .opblock',
      operationsOf,
    )
    t.same(
      sources.sort(),
      [...INGESTION].sort(),
      'the sources section holds the ingestion operations',
    )
    t.match(await page.title(), /Swagger UI/)
    // "Authorize" is offered since the API takes Bearer keys.
    t.ok(await page.$('.btn.authorize'), 'the Authorize button is there')
  },
)

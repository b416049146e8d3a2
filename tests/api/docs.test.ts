import { existsSync } from 'node:fs'
import { chromium } from 'playwright-core'
import t from 'tap'
import { buildTestApp, listenTestApp } from '../helpers/api.ts'

const OPERATIONS = [
  'POST /api/chat',
  'POST /api/generate',
  'GET /api/models',
  'POST /api/pull',
  'GET /api/health',
  'GET /api/health/live',
]

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
  const chat = doc.paths['/api/chat'].post
  t.ok(chat.requestBody.content['application/json'].schema, 'chat has a body schema')
  t.ok(chat.responses['200'].content['application/x-ndjson'], 'chat documents its stream')
  t.ok(chat.responses['400'], 'chat documents its errors')
  t.same(doc.paths['/api/health'].get.security, [], 'health is open')
  t.same(doc.security, [{ bearer: [] }])
  t.equal(doc.components.securitySchemes.bearer.scheme, 'bearer')
  t.ok(doc.components.schemas.Error, 'the error shape is a named schema')
})

const CHROMIUM = '/usr/bin/chromium'

t.test(
  'Swagger UI in a real browser shows all six operations',
  {
    skip:
      !existsSync(CHROMIUM) &&
      'Debian chromium is not installed (./confluence-bot test installs it)',
  },
  async (t) => {
    const { url } = await listenTestApp(t)
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    })
    t.teardown(() => browser.close())
    const page = await browser.newPage()
    await page.goto(`${url}/docs`)
    await page.waitForSelector('.opblock', { timeout: 30_000 })
    const shown = await page.$$eval('.opblock', (blocks) =>
      blocks.map((b) => {
        const method = b.querySelector('.opblock-summary-method')?.textContent?.trim() ?? ''
        const path = b.querySelector('.opblock-summary-path')?.getAttribute('data-path') ?? ''
        return `${method} ${path}`
      }),
    )
    for (const op of OPERATIONS) t.ok(shown.includes(op), `${op} is shown`)
    t.match(await page.title(), /Swagger UI/)
    // "Authorize" is offered since the API takes Bearer keys.
    t.ok(await page.$('.btn.authorize'), 'the Authorize button is there')
  },
)

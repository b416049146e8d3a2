import { readFile } from 'node:fs/promises'
import t from 'tap'
import { PAGE_CSP, VENDOR } from '../../services/api/src/routes/page/index.ts'
import { ADMIN_KEY, listenTestApp, READER_KEY } from '../helpers/api.ts'

// What the api serves for the chat page, over a real socket: the page and its modules without a
// key, the two browser libraries from the api's own dependencies (no CDN), a strict CSP, and the
// other browser routes (/docs, /admin/queues) where they were.

t.test('the page and its modules, with a strict CSP', async (t) => {
  const { url } = await listenTestApp(t, { API_KEYS: READER_KEY, ADMIN_API_KEYS: ADMIN_KEY })
  const page = await fetch(`${url}/`)
  t.equal(page.status, 200, 'served without a key')
  t.match(page.headers.get('content-type'), /^text\/html/)
  t.equal(page.headers.get('content-security-policy'), PAGE_CSP)
  t.match(PAGE_CSP, /script-src 'self'(;|$)/, 'no inline script may run')
  t.equal(page.headers.get('x-content-type-options'), 'nosniff')
  t.equal(page.headers.get('referrer-policy'), 'no-referrer')
  const html = await page.text()
  const scripts = [...html.matchAll(/<script\b[^>]*>/g)].map((m) => m[0])
  t.same(scripts, ['<script type="module" src="/app.js">'], 'one module, nothing inline')
  t.notMatch(html, /<style|\sstyle=|\son[a-z]+=/i, 'no inline style or handler')
  t.notMatch(html, /https?:\/\/(?!www\.w3\.org)/, 'nothing from another host')

  for (const module of ['app.js', 'api.js', 'render.js', 'admin.js']) {
    const res = await fetch(`${url}/${module}`)
    t.equal(res.status, 200, module)
    t.match(res.headers.get('content-type'), /javascript/, `${module} is a script`)
    t.equal(res.headers.get('content-security-policy'), PAGE_CSP)
  }
  t.match(VENDOR['marked.js'], /\/marked\/lib\/marked\.esm\.js$/, "marked's ES module build")
  t.match(VENDOR['purify.js'], /\/dompurify\/dist\/purify\.es\.mjs$/, "DOMPurify's ES module build")
  for (const [path, file] of [
    ['/vendor/marked.js', VENDOR['marked.js'] as string],
    ['/vendor/purify.js', VENDOR['purify.js'] as string],
  ] as const) {
    const res = await fetch(`${url}${path}`)
    t.equal(res.status, 200, path)
    t.match(res.headers.get('content-type'), /^(text|application)\/javascript/, 'a script')
    t.equal(await res.text(), await readFile(file, 'utf8'), `${path} is the package's ES build`)
  }
  const head = await fetch(`${url}/`, { method: 'HEAD' })
  t.equal(head.status, 200)

  const missing = await fetch(`${url}/nothing-here.js`)
  t.equal(missing.status, 404)
  t.match(await missing.json(), { error: 'not_found', statusCode: 404 })
  const outside = await fetch(`${url}/%2e%2e/package.json`)
  t.equal(outside.status, 404, 'nothing outside the page folder')

  // The api itself still wants a key, and the other browser routes are where they were.
  t.equal((await fetch(`${url}/api/me`)).status, 401)
  const docs = await fetch(`${url}/docs/`)
  t.equal(docs.status, 200)
  t.match(await docs.text(), /swagger-ui/i)
  t.equal((await fetch(`${url}/admin/queues`)).status, 401)
  const basic = `Basic ${Buffer.from(`admin:${ADMIN_KEY}`).toString('base64')}`
  const queues = await fetch(`${url}/admin/queues`, { headers: { authorization: basic } })
  t.equal(queues.status, 200, 'the queue dashboard, with an admin key as password')
})

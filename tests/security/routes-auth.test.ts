// Security, route by route: every route the app registers (the OpenAPI document's operations and
// the routes it does not describe: the chat page, its assets, the docs UI, the queue dashboard,
// MCP's GET and DELETE) is classified in one table below (open, reader or admin), and each is
// asked over a real socket with no key, wrong keys, a reader key, a reader key limited to one
// space and an admin key. A route missing from the table, or an entry matching no route, fails
// the test: a new route cannot ship without someone deciding who may call it.
import { buildApp } from '@confluence-bot/api'
import type { RouteOptions } from 'fastify'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { ADMIN_KEY, READER_KEY, testConfig } from '../helpers/api.ts'
import { ENG_KEY } from '../helpers/grounded.ts'
import { standIn } from '../helpers/ollama.ts'
import { startRedis } from '../helpers/redis.ts'

/** How long one answer may take: a refusal that takes longer is a hang. */
const DEADLINE_MS = 5_000

type Answer = { status: number; type: string; challenge: string; text: string; json: unknown }

/** One request over the socket with undici, with a deadline, and the parts a refusal is judged by. */
async function ask(
  url: string,
  options: { method: string; headers: Record<string, string>; body?: string },
): Promise<Answer> {
  const res = await request(url, {
    method: options.method as 'GET',
    headers: options.headers,
    body: options.body,
    headersTimeout: DEADLINE_MS,
    bodyTimeout: DEADLINE_MS,
    signal: AbortSignal.timeout(DEADLINE_MS),
  })
  const text = await res.body.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  const header = (name: string) => {
    const value = res.headers[name]
    return typeof value === 'string' ? value : ''
  }
  return {
    status: res.statusCode,
    type: header('content-type'),
    challenge: header('www-authenticate'),
    text,
    json,
  }
}

type Access = 'open' | 'reader' | 'admin'

/**
 * Who may call each route: `METHOD /path` as Fastify registers it (`:param`, `*`). An entry
 * ending in `/**` covers that path and everything under it, any method (the queue dashboard,
 * whose routes belong to bull-board and change with its version). HEAD routes share their GET's
 * entry (Fastify derives them from the GET, hooks included).
 */
const ACCESS: Record<string, Access> = {
  // Probes: a load balancer or kubelet asks them without a key.
  'GET /api/health': 'open',
  'GET /api/health/live': 'open',
  // The API document and Swagger UI: describing the API reveals nothing a key protects.
  'GET /docs': 'open',
  'GET /docs/': 'open',
  'GET /docs/json': 'open',
  'GET /docs/yaml': 'open',
  'GET /docs/static/index.html': 'open',
  'GET /docs/static/swagger-initializer.js': 'open',
  'GET /docs/static/*': 'open',
  // The chat page and its assets: the page asks for the key itself, then calls the API with it.
  'GET /': 'open',
  'GET /index.html': 'open',
  'GET /app.js': 'open',
  'GET /api.js': 'open',
  'GET /admin.js': 'open',
  'GET /render.js': 'open',
  'GET /style.css': 'open',
  'GET /favicon.svg': 'open',
  'GET /vendor/marked.js': 'open',
  'GET /vendor/purify.js': 'open',
  // CORS preflights, on any path: a browser sends them without credentials, and they answer only
  // which origins, methods and headers a real request may use.
  'OPTIONS *': 'open',

  // Readers: asking, searching, their own conversations, the models.
  'POST /api/chat': 'reader',
  'POST /api/generate': 'reader',
  'POST /api/search': 'reader',
  'GET /api/spaces': 'reader',
  'GET /api/models': 'reader',
  'GET /api/me': 'reader',
  'GET /api/conversations': 'reader',
  'GET /api/conversations/:id': 'reader',
  'DELETE /api/conversations/:id': 'reader',
  'POST /v1/chat/completions': 'reader',
  'GET /v1/models': 'reader',
  'GET /v1/models/:model': 'reader',
  'POST /v1/embeddings': 'reader',
  // Another method on a /v1 or /ollama path: the scope's own 404/405, after its key check.
  'OPTIONS /v1': 'reader',
  'OPTIONS /v1/*': 'reader',
  'OPTIONS /ollama': 'reader',
  'OPTIONS /ollama/*': 'reader',
  'GET /ollama': 'reader',
  'GET /ollama/': 'reader',
  'GET /ollama/api/version': 'reader',
  'GET /ollama/api/ps': 'reader',
  'GET /ollama/api/tags': 'reader',
  'POST /ollama/api/show': 'reader',
  'POST /ollama/api/embed': 'reader',
  'POST /ollama/api/embeddings': 'reader',
  'POST /ollama/api/chat': 'reader',
  'POST /ollama/api/generate': 'reader',
  'POST /mcp': 'reader',
  'GET /mcp': 'reader',
  'DELETE /mcp': 'reader',

  // Admins: what changes the server or reads its configuration.
  'POST /api/pull': 'admin',
  'POST /api/models/import': 'admin',
  'POST /api/sources': 'admin',
  'GET /api/sources': 'admin',
  'GET /api/sources/:id': 'admin',
  'DELETE /api/sources/:id': 'admin',
  'POST /api/sources/:id/sync': 'admin',
  'POST /api/sources/export': 'admin',
  'PUT /api/sources/:id/export': 'admin',
  'GET /api/jobs': 'admin',
  'GET /api/jobs/:id': 'admin',
  'GET /admin/config': 'admin',
  'ANY /admin/queues/**': 'admin',
  // Prometheus' scrape: an admin key or METRICS_TOKEN (tests/api/metrics.test.ts).
  'GET /metrics': 'admin',
}

/** The queue dashboard, which a browser opens: an admin key is also taken as a Basic password. */
const BASIC_ALLOWED = /^\/admin\/queues(\/|$)/

type Surface = 'api' | 'openai' | 'ollama'
/** Which error shape a path answers in. */
const surfaceOf = (path: string): Surface =>
  /^\/v1(\/|$)/.test(path) ? 'openai' : /^\/ollama(\/|$)/.test(path) ? 'ollama' : 'api'

type Route = { method: string; url: string }

/** A prefix's root is one route for Fastify, registered as /ollama and /ollama/ alike. */
const trim = (url: string) => (url.length > 1 ? url.replace(/\/$/, '') : url)

function accessOf(route: Route): { access: Access; entry: string } | undefined {
  const method = route.method === 'HEAD' ? 'GET' : route.method
  const exact = `${method} ${route.url}`
  const found = ACCESS[exact]
  if (found !== undefined) return { access: found, entry: exact }
  for (const [entry, access] of Object.entries(ACCESS)) {
    if (!entry.startsWith('ANY ') || !entry.endsWith('/**')) continue
    const prefix = entry.slice(4, -3)
    if (route.url === prefix || route.url.startsWith(`${prefix}/`)) return { access, entry }
  }
  return undefined
}

/** A concrete path for a route: every parameter and wildcard filled with something plausible. */
const concrete = (url: string) =>
  url === '*'
    ? '/any/path'
    : url.replace(/:([A-Za-z]+)/g, (_m, name: string) => `x-${name}`).replace(/\*$/, 'x')

const MCP_INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: {
    protocolVersion: '2025-06-18',
    capabilities: {},
    clientInfo: { name: 'routes-auth-test', version: '1.0.0' },
  },
}

const basic = (password: string) =>
  `Basic ${Buffer.from(`operator:${password}`).toString('base64')}`

/** The credentials every route is asked with, and who each one is. */
type Who = 'nobody' | 'reader' | 'admin'
const CREDENTIALS: Array<{ label: string; header?: string; who: Who; whoOnDashboard?: Who }> = [
  { label: 'no key', who: 'nobody' },
  { label: 'an unknown key', header: 'Bearer not-a-configured-key-0000', who: 'nobody' },
  {
    label: 'the admin key with its last character changed',
    header: `Bearer ${ADMIN_KEY.slice(0, -1)}${ADMIN_KEY.endsWith('x') ? 'y' : 'x'}`,
    who: 'nobody',
  },
  { label: 'the admin key under another scheme', header: `Token ${ADMIN_KEY}`, who: 'nobody' },
  { label: 'an empty Bearer', header: 'Bearer ', who: 'nobody' },
  // Basic counts on the dashboard alone, which a browser opens.
  {
    label: 'the admin key as a Basic password',
    header: basic(ADMIN_KEY),
    who: 'nobody',
    whoOnDashboard: 'admin',
  },
  { label: 'a reader key', header: `Bearer ${READER_KEY}`, who: 'reader' },
  { label: 'a reader key limited to ENG', header: `Bearer ${ENG_KEY}`, who: 'reader' },
  { label: 'an admin key', header: `Bearer ${ADMIN_KEY}`, who: 'admin' },
]

const lets = (access: Access, who: Who) =>
  access === 'open' || (access === 'reader' && who !== 'nobody') || who === 'admin'

/** Checks a refusal's body in the error shape of its surface. */
function refusalShape(t: Test, surface: Surface, status: 401 | 403, res: Answer, name: string) {
  const code = status === 401 ? 'unauthorized' : 'forbidden'
  t.match(res.type, /^application\/json/, `${name}: JSON`)
  const body = res.json as Record<string, unknown> | undefined
  if (surface === 'api') {
    t.same(Object.keys(body ?? {}).sort(), ['error', 'message', 'statusCode'], `${name}: API shape`)
    t.match(body, { error: code, message: /\S/, statusCode: status }, `${name}: ${res.text}`)
  } else if (surface === 'openai') {
    t.same(Object.keys(body ?? {}), ['error'], `${name}: OpenAI shape`)
    t.match(
      body,
      {
        error: {
          message: /\S/,
          type: 'invalid_request_error',
          code: status === 401 ? 'invalid_api_key' : code,
        },
      },
      `${name}: ${res.text}`,
    )
  } else {
    t.same(Object.keys(body ?? {}), ['error'], `${name}: Ollama shape`)
    t.match(body, { error: /\S/ }, `${name}: ${res.text}`)
  }
}

t.test(
  'every route refuses what it must, in its surface error shape, over a real socket',
  async (t) => {
    const redis = await startRedis()
    t.teardown(() => redis.stop())
    const ollama = await standIn(t)
    const config = await testConfig(t, {
      API_KEYS: `${READER_KEY},${ENG_KEY}:ENG`,
      ADMIN_API_KEYS: ADMIN_KEY,
      REDIS_URL: redis.url,
      OLLAMA_URL: ollama.url,
      // A busy machine must not turn a refusal into the overload 503 (a control of its own).
      PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0',
      PRESSURE_MAX_EVENT_LOOP_UTILIZATION: '0',
    })
    const app = buildApp({ config })
    const registered: Route[] = []
    app.addHook('onRoute', (route: RouteOptions) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method]
      for (const method of methods) registered.push({ method, url: route.url })
    })
    t.teardown(() => app.close())
    const url = await app.listen({ host: '127.0.0.1', port: 0 })

    const doc = (await ask(`${url}/docs/json`, { method: 'GET', headers: {} })).json as {
      paths: Record<string, Record<string, unknown>>
    }
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((method) => ({
        method: method.toUpperCase(),
        // OpenAPI writes {id}; Fastify registered :id. /ollama/ is the prefix's root.
        url: path.replace(/\{([^}]+)\}/g, ':$1'),
      })),
    )

    t.test('the lists are whole', async (t) => {
      t.ok(documented.length >= 30, `the document lists ${documented.length} operations`)
      const known = new Set(registered.map((r) => `${r.method} ${trim(r.url)}`))
      for (const op of documented) {
        t.ok(
          known.has(`${op.method} ${trim(op.url)}`),
          `${op.method} ${op.url} is a registered route`,
        )
      }
      t.ok(registered.length > documented.length, 'the app registers more than it documents')
      const unclassified = registered.filter((r) => accessOf(r) === undefined)
      t.same(
        unclassified.map((r) => `${r.method} ${r.url}`),
        [],
        'every route is in ACCESS (decide: open, reader or admin)',
      )
      const used = new Set(registered.map((r) => accessOf(r)?.entry))
      t.same(
        Object.keys(ACCESS).filter((entry) => !used.has(entry)),
        [],
        'every ACCESS entry matches a route (remove stale ones)',
      )
      // Undocumented routes are only what the table says may be: nothing a reader or admin calls
      // on the API is left out of /docs except MCP's 405s, the dashboard, Prometheus' scrape and
      // the 404/405 answers to OPTIONS.
      const documentedKeys = new Set(documented.map((op) => `${op.method} ${trim(op.url)}`))
      const undocumentedProtected = registered
        .filter((r) => r.method !== 'HEAD' && !documentedKeys.has(`${r.method} ${trim(r.url)}`))
        .filter((r) => accessOf(r)?.access !== 'open')
        .filter((r) => !BASIC_ALLOWED.test(r.url) && r.url !== '/mcp' && r.url !== '/metrics')
        .filter((r) => r.method !== 'OPTIONS')
      t.same(undocumentedProtected, [], 'a protected route missing from /docs')
    })

    for (const route of registered) {
      const found = accessOf(route)
      if (found === undefined) continue // reported above
      const { access } = found
      const path = concrete(route.url)
      const surface = surfaceOf(path)
      const dashboard = BASIC_ALLOWED.test(route.url)
      const name = `${route.method} ${route.url}`
      t.test(`${name} (${access})`, async (t) => {
        for (const credential of CREDENTIALS) {
          const who = dashboard ? (credential.whoOnDashboard ?? credential.who) : credential.who
          const headers: Record<string, string> = {}
          if (credential.header !== undefined) headers.authorization = credential.header
          let body: string | undefined
          if (!['GET', 'HEAD'].includes(route.method)) {
            headers['content-type'] = 'application/json'
            body = JSON.stringify(route.url === '/mcp' ? MCP_INITIALIZE : {})
            if (route.url === '/mcp') headers.accept = 'application/json, text/event-stream'
          }
          const res = await ask(`${url}${path}`, { method: route.method, headers, body })
          const what = `${name} with ${credential.label}`
          if (lets(access, who)) {
            t.notOk([401, 403].includes(res.status), `${what} is let in (${res.status})`)
            t.ok(res.status < 500, `${what}: no 5xx (${res.status} ${res.text.slice(0, 200)})`)
            continue
          }
          const status = who === 'nobody' ? 401 : 403
          t.equal(res.status, status, `${what} → ${status}`)
          if (status === 401) {
            t.match(
              res.challenge,
              dashboard ? /^Basic realm=/ : /^Bearer realm=/,
              `${what}: challenge`,
            )
          }
          if (route.method !== 'HEAD') refusalShape(t, surface, status, res, what)
        }
      })
    }

    t.test('the process is still up', async (t) => {
      const live = await ask(`${url}/api/health/live`, { method: 'GET', headers: {} })
      t.equal(live.status, 200)
    })
  },
)

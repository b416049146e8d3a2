import { once } from 'node:events'
import { createServer, type LookupFunction } from 'node:net'
import type { ResolveHost } from '@confluence-bot/shared'
import t, { type Test } from 'tap'
import type { ConfluenceError } from '../../../services/worker/src/confluence/errors.ts'
import { createHttp } from '../../../services/worker/src/confluence/http.ts'
import type { Limiter } from '../../../services/worker/src/confluence/limiter.ts'
import { pinnedLookup } from '../../../services/worker/src/confluence/lookup.ts'

// Each connection of a source's client is checked on the addresses it connects to: a host that
// answers a public address to the first check and an internal one to the connection (DNS
// rebinding) gets no connection. The servers listen on 127.0.0.1; DNS is a stub.

const free: Limiter = { acquire: async () => {}, pauseFor: async () => {} }
const PUBLIC = { address: '93.184.216.34', family: 4 }
const LOOPBACK = { address: '127.0.0.1', family: 4 }

/** A JSON server on 127.0.0.1 that counts the connections it accepted. */
async function server(t: Test) {
  const accepted = { count: 0 }
  const srv = createServer((socket) => {
    accepted.count++
    socket.once('data', () =>
      socket.end(
        'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n' +
          'connection: close\r\n\r\n{"ok":true}',
      ),
    )
  })
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  t.teardown(() => srv.close())
  return { port: (srv.address() as { port: number }).port, accepted }
}

/** A resolver that gives its answers in turn (the last one from then on) and counts calls. */
function stub(...answers: Array<Array<{ address: string; family: number }>>) {
  const calls: string[] = []
  const resolve: ResolveHost = async (host) => {
    calls.push(host)
    return answers[Math.min(calls.length, answers.length) - 1] ?? []
  }
  return { resolve, calls }
}

function client(t: Test, baseUrl: string, resolve: ResolveHost, allowedHosts = '') {
  const http = createHttp({
    baseUrl,
    timeoutMs: 5_000,
    allowedHosts,
    limiter: free,
    resolve,
    retry: { attempts: 3, baseMs: 1, capMs: 1 },
  })
  t.teardown(() => http.close())
  return http
}

t.test('a host that rebinds to loopback after the check gets no connection', async (t) => {
  const { port, accepted } = await server(t)
  // localhost: without the connection's own check the system resolver reaches the server.
  const dns = stub([PUBLIC], [LOOPBACK])
  const http = client(t, `http://localhost:${port}`, dns.resolve)
  const err = (await http.getJson(`http://localhost:${port}/x`).catch((e) => e)) as ConfluenceError
  t.equal(accepted.count, 0, 'the internal address was never connected to')
  t.equal(err.code, 'config')
  t.ok(err.fatal, 'not retried')
  t.match(err.message, `localhost (127.0.0.1), a loopback, private, link-local`)
  t.match(err.message, `"localhost:${port}" to CONFLUENCE_ALLOWED_HOSTS`)
  t.same(dns.calls, ['localhost', 'localhost'], 'checked before the request and at connect')
})

t.test('a connection uses the addresses its own check resolved', async (t) => {
  const { port, accepted } = await server(t)
  // wiki.test resolves nowhere but through the stub: reaching the server proves the socket
  // connected to what the check saw, not to a second resolution of its own.
  const dns = stub([LOOPBACK])
  const http = client(t, `http://wiki.test:${port}`, dns.resolve, 'wiki.test')
  t.same(await http.getJson(`http://wiki.test:${port}/x`), { ok: true })
  t.equal(accepted.count, 1)
  t.same(dns.calls, ['wiki.test'], 'an allowed host is not checked beforehand')
})

t.test('mixed answers at connect time are refused whole', async (t) => {
  const { port, accepted } = await server(t)
  const dns = stub([PUBLIC], [PUBLIC, LOOPBACK])
  const http = client(t, `http://localhost:${port}`, dns.resolve)
  await t.rejects(http.getJson(`http://localhost:${port}/x`), {
    code: 'config',
    message: /localhost \(127\.0\.0\.1\)/,
  })
  t.equal(accepted.count, 0)
})

t.test('a resolver failure at connect time is a network error', async (t) => {
  const { port } = await server(t)
  let calls = 0
  const resolve: ResolveHost = async () => {
    if (calls++ === 0) return [PUBLIC]
    throw Object.assign(new Error('queryA ENOTFOUND'), { code: 'ENOTFOUND' })
  }
  const http = client(t, `http://localhost:${port}`, resolve)
  await t.rejects(http.getJson(`http://localhost:${port}/x`), {
    code: 'network',
    fatal: true,
    message: /Could not resolve the source host localhost \(ENOTFOUND\)/,
  })
  t.equal(calls, 2, 'NXDOMAIN is not retried')
})

/** Calls a lookup the way net.connect does; what its callback got. */
function call(lookup: LookupFunction, options: { family?: number; all?: boolean }) {
  return new Promise<{ err: NodeJS.ErrnoException | null; address: unknown; family?: number }>(
    (resolve) =>
      lookup('wiki.test', options, (err, address, family) => resolve({ err, address, family })),
  )
}

t.test('the lookup answers as dns.lookup does: one address, all, or by family', async (t) => {
  const V6 = { address: '2606:4700::1111', family: 6 }
  const lookup = pinnedLookup({
    allowed: false,
    allowAs: 'wiki.test',
    resolve: stub([V6, PUBLIC]).resolve,
  })
  t.same(await call(lookup, {}), { err: null, address: V6.address, family: 6 })
  t.same(await call(lookup, { all: true }), { err: null, address: [V6, PUBLIC] })
  t.same(await call(lookup, { all: true, family: 4 }), { err: null, address: [PUBLIC] })
  t.same(await call(lookup, { family: 4 }), { err: null, address: PUBLIC.address, family: 4 })
  const none = await call(
    pinnedLookup({ allowed: true, allowAs: 'x', resolve: stub([PUBLIC]).resolve }),
    { family: 6 },
  )
  t.equal(none.err?.code, 'ENOTFOUND')
  t.equal(none.err?.message, 'wiki.test has no usable address')
  const refused = await call(
    pinnedLookup({ allowed: false, allowAs: 'wiki.test:443', resolve: stub([LOOPBACK]).resolve }),
    {},
  )
  t.match(refused.err, { name: 'SourceHostError', fatal: true, message: /wiki\.test \(127/ })
  const allowed = await call(
    pinnedLookup({ allowed: true, allowAs: 'x', resolve: stub([LOOPBACK]).resolve }),
    {},
  )
  t.same(allowed, { err: null, address: '127.0.0.1', family: 4 })
})

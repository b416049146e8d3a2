import { createHash } from 'node:crypto'
import { loadApiConfig } from '@confluence-bot/shared'
import Fastify, { type FastifyRequest } from 'fastify'
import t from 'tap'
import { allowedSpaces } from '../../services/api/src/lib/spaces.ts'
import auth from '../../services/api/src/plugins/app/auth.ts'
import config from '../../services/api/src/plugins/app/config.ts'
import { bearer } from '../helpers/api.ts'

// What requireRole leaves on a request (its spaces and owner), and allowedSpaces() over it.

const ENG_KEY = 'k3y-for-eng-team-0001'
const ALL_KEY = 'k3y-for-everyone-00002'
const OPS_ADMIN = 'admin-key-for-ops-0003'
const BOTH = 'key-in-both-lists-0004'

const ownerOf = (key: string) => createHash('sha256').update(key).digest('hex').slice(0, 16)

type Seen = {
  role?: string
  spaces?: readonly string[] | null
  owner?: string
  allowed: readonly string[] | null
}

/** A bare app with the config and auth plugins and one route that reports what auth left. */
async function probeApp(env: Record<string, string>) {
  const app = Fastify()
  await app.register(config, { config: loadApiConfig({ LOG_LEVEL: 'silent', ...env }) })
  await app.register(auth)
  const report = (request: FastifyRequest): Seen => {
    const asked = (request.query as { spaces?: string }).spaces
    const allowed = allowedSpaces(
      request,
      asked === undefined ? undefined : asked.split(',').filter(Boolean),
    )
    return {
      role: request.role,
      spaces: request.spaces,
      owner: request.owner,
      allowed: allowed ?? null,
    }
  }
  app.get('/probe', { onRequest: app.requireRole('reader') }, async (request) => report(request))
  // A route outside any authenticated scope: allowedSpaces fails closed there.
  app.get('/open', async (request) => report(request))
  await app.ready()
  return app
}

const KEYS = {
  API_KEYS: `${ENG_KEY}:ENG+OPS,${ALL_KEY},${BOTH}:ENG`,
  ADMIN_API_KEYS: `${OPS_ADMIN}:ops,${BOTH}:ENG`,
}

t.test('each key carries its spaces and an owner id that is not the key', async (t) => {
  const app = await probeApp(KEYS)
  t.teardown(() => app.close())
  const probe = async (key: string, query = '') =>
    (await app.inject({ url: `/probe${query}`, headers: bearer(key) })).json() as Seen

  t.same(await probe(ENG_KEY), {
    role: 'reader',
    spaces: ['ENG', 'OPS'],
    owner: ownerOf(ENG_KEY),
    allowed: ['ENG', 'OPS'],
  })
  t.same(await probe(ALL_KEY), {
    role: 'reader',
    spaces: null,
    owner: ownerOf(ALL_KEY),
    allowed: null,
  })
  t.same(await probe(OPS_ADMIN), {
    role: 'admin',
    spaces: ['OPS'],
    owner: ownerOf(OPS_ADMIN),
    allowed: ['OPS'],
  })
  // Listed in both: the admin grant, with the (same) spaces.
  t.same(await probe(BOTH), {
    role: 'admin',
    spaces: ['ENG'],
    owner: ownerOf(BOTH),
    allowed: ['ENG'],
  })

  const owners = new Set([ENG_KEY, ALL_KEY, OPS_ADMIN, BOTH].map(ownerOf))
  t.equal(owners.size, 4, 'owners differ between keys')
  for (const key of [ENG_KEY, ALL_KEY]) {
    const owner = (await probe(key)).owner as string
    t.match(owner, /^[0-9a-f]{16}$/)
    t.notOk(key.includes(owner), 'the owner id holds nothing of the key')
  }
  t.equal((await app.inject({ url: '/probe' })).statusCode, 401)
})

t.test("allowedSpaces narrows the asked spaces to the key's", async (t) => {
  const app = await probeApp(KEYS)
  t.teardown(() => app.close())
  const allowed = async (key: string, spaces: string) =>
    ((await app.inject({ url: `/probe?spaces=${spaces}`, headers: bearer(key) })).json() as Seen)
      .allowed

  // A limited key: the intersection, in the asked order; nothing in common is nothing.
  t.same(await allowed(ENG_KEY, 'OPS,HR,ENG'), ['OPS', 'ENG'])
  t.same(await allowed(ENG_KEY, 'HR'), [])
  t.same(await allowed(ENG_KEY, 'eng,ops,ENG'), ['ENG', 'OPS'], 'global keys in capitals, once')
  t.same(await allowed(ENG_KEY, '~eng'), [], 'a personal space key keeps its case')
  // An empty ask stays empty (the search module matches nothing for it).
  t.same(await allowed(ENG_KEY, ''), [])
  // A key of every space: what it asked for, as asked.
  t.same(await allowed(ALL_KEY, 'HR,eng,~JDoe'), ['HR', 'ENG', '~JDoe'])
  // What is no space key stays as asked: the search matches nothing for it.
  t.same(await allowed(ALL_KEY, 'a%20b,ENG'), ['a b', 'ENG'])
  t.same(await allowed(ALL_KEY, ''), [])
})

t.test('with auth off every request sees every space and is owned by "local"', async (t) => {
  const app = await probeApp({})
  t.teardown(() => app.close())
  const res = await app.inject({ url: '/probe?spaces=ENG' })
  t.same(res.json(), { role: 'admin', spaces: null, owner: 'local', allowed: ['ENG'] })
  t.same((await app.inject({ url: '/probe' })).json(), {
    role: 'admin',
    spaces: null,
    owner: 'local',
    allowed: null,
  })
})

t.test('a request that never went through requireRole is allowed no space', async (t) => {
  const app = await probeApp(KEYS)
  t.teardown(() => app.close())
  t.same((await app.inject({ url: '/open', headers: bearer(ALL_KEY) })).json(), { allowed: [] })
  t.same((await app.inject({ url: '/open?spaces=ENG' })).json(), { allowed: [] })
})

t.test('over a real socket, a limited key gets its spaces', async (t) => {
  const app = await probeApp(KEYS)
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const res = await fetch(`${url}/probe?spaces=OPS,HR`, { headers: bearer(ENG_KEY) })
  t.equal(res.status, 200)
  t.same(await res.json(), {
    role: 'reader',
    spaces: ['ENG', 'OPS'],
    owner: ownerOf(ENG_KEY),
    allowed: ['OPS'],
  })
})

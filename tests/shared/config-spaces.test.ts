import { ConfigError, loadApiConfig } from '@confluence-bot/shared'
import t from 'tap'

// API_KEYS / ADMIN_API_KEYS entries may carry the spaces a key is limited to: KEY:SPACE+SPACE.

const ENG_KEY = 'k3y-for-eng-team-0001'
const ALL_KEY = 'k3y-for-everyone-00002'
const ADMIN = 'admin-key-for-ops-0003'

const problemsOf = (env: Record<string, string>): ConfigError =>
  t.throws(() => loadApiConfig(env)) as ConfigError

t.test(
  'a key with a space list is limited to it; a key without one sees every space',
  async (t) => {
    const config = loadApiConfig({
      API_KEYS: `${ENG_KEY}:ENG+OPS, ${ALL_KEY}`,
      ADMIN_API_KEYS: `${ADMIN} : ops + ~jdoe + ~557058:0c1f-4e2a`,
    })
    t.same(config.apiKeys.readers, [ENG_KEY, ALL_KEY], 'readers hold the keys alone')
    t.same(config.apiKeys.admins, [ADMIN])
    t.same(config.apiKeys.spaces.get(ENG_KEY), ['ENG', 'OPS'])
    t.notOk(config.apiKeys.spaces.has(ALL_KEY), 'a key without ":" is not limited')
    // Global space keys are capitals in Confluence; a personal one keeps its case.
    t.same(config.apiKeys.spaces.get(ADMIN), ['OPS', '~jdoe', '~557058:0c1f-4e2a'])
    t.ok(Object.isFrozen(config.apiKeys.spaces.get(ENG_KEY)))
  },
)

t.test('a space named twice counts once', async (t) => {
  const config = loadApiConfig({ API_KEYS: `${ENG_KEY}:ENG+eng+OPS` })
  t.same(config.apiKeys.spaces.get(ENG_KEY), ['ENG', 'OPS'])
})

t.test('a key listed in both variables with the same spaces is accepted', async (t) => {
  const config = loadApiConfig({
    API_KEYS: `${ENG_KEY}:ENG+OPS`,
    ADMIN_API_KEYS: `${ENG_KEY}:OPS+ENG`,
  })
  t.same(config.apiKeys.readers, [ENG_KEY])
  t.same(config.apiKeys.admins, [ENG_KEY])
  t.same(config.apiKeys.spaces.get(ENG_KEY), ['ENG', 'OPS'])
})

const bad: Array<[string, Record<string, string>, RegExp]> = [
  [
    'an empty space list',
    { API_KEYS: `${ALL_KEY},${ENG_KEY}:` },
    /API_KEYS key #2 has an invalid space key #1/,
  ],
  [
    'an empty space between "+"',
    { API_KEYS: `${ENG_KEY}:ENG++OPS` },
    /API_KEYS key #1 has an invalid space key #2/,
  ],
  [
    'a space key with a blank',
    { ADMIN_API_KEYS: `${ADMIN}:MY SPACE` },
    /ADMIN_API_KEYS key #1 has an invalid space key #1/,
  ],
  [
    'a space key with a slash',
    { API_KEYS: `${ENG_KEY}:ENG+a/b` },
    /API_KEYS key #1 has an invalid space key #2/,
  ],
  ['a lone "~"', { API_KEYS: `${ENG_KEY}:~` }, /API_KEYS key #1 has an invalid space key #1/],
  [
    'a key too short before ":"',
    { API_KEYS: 'tiny-k:ENG' },
    /API_KEYS key #1 is shorter than 16 characters/,
  ],
  [
    'one key with two space lists',
    { API_KEYS: `${ENG_KEY}:ENG`, ADMIN_API_KEYS: `${ADMIN},${ENG_KEY}` },
    /ADMIN_API_KEYS key #2 repeats API_KEYS key #1 with other spaces/,
  ],
  [
    'one key twice in a list, limited once',
    { API_KEYS: `${ENG_KEY}:ENG,${ENG_KEY}:ENG+OPS` },
    /API_KEYS key #2 repeats API_KEYS key #1 with other spaces/,
  ],
]

for (const [what, env, message] of bad) {
  t.test(`${what} stops the start, naming the variable and position but not the key`, async (t) => {
    const err = problemsOf(env)
    t.type(err, ConfigError)
    t.match(err.message, message)
    t.equal(err.problems.length, 1)
    for (const key of [ENG_KEY, ADMIN, ALL_KEY, 'tiny-k']) t.notMatch(err.message, key)
  })
}

t.test(
  'a colon inside an old-style key is read as a space list and refused, not trusted',
  async (t) => {
    // A key that held a ":" before space lists existed: the part after it is not a valid space
    // key, and nothing of it reaches the message.
    const err = problemsOf({ API_KEYS: 'abcdefghijklmnopqrstuvwx:yz/0123456789' })
    t.match(err.message, /API_KEYS key #1 has an invalid space key #1/)
    t.notMatch(err.message, /abcdef|yz\/0123/)
  },
)

t.test('every problem is reported at once', async (t) => {
  const err = problemsOf({ API_KEYS: `tiny-k,${ENG_KEY}:?`, ADMIN_API_KEYS: `${ADMIN}:` })
  t.equal(err.problems.length, 3)
})

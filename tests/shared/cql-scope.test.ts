import { checkSourceCql, cqlProblem, createSource, SourceInputError } from '@confluence-bot/shared'
import type { Redis } from 'ioredis'
import t from 'tap'

// A source's cql is wrapped in parentheses and ANDed with its spaces by the worker: it must not
// close them early (`) OR (space = "ENG"` would pull another space in), nor leave them open, nor
// swallow the closing one in a string that never ends. Parentheses inside strings are text.

t.test('cqlProblem: balanced outside quoted strings, or why not', async (t) => {
  const fine = [
    'label = "runbook"',
    '(label = "a" OR label = "b") AND title ~ "x"',
    'title ~ "Page 1)" OR title ~ \'(draft\'',
    'title ~ "say \\"hi\\") OR (x"',
    "title ~ 'it\\'s (here'",
    'title ~ "back\\\\slash" AND (label = "x")',
    '((a = "1"))',
  ]
  for (const cql of fine) t.equal(cqlProblem(cql), '', cql)
  const refused: Array<[string, RegExp]> = [
    ['title ~ "Page 1") OR (space = "ENG"', /a "\)" at position 17 that closes no "\(" of its own/],
    [') OR (', /a "\)" at position 1/],
    ['(label = "a"', /leaves 1 "\(" unclosed/],
    ['((label = "a")', /leaves 1 "\(" unclosed/],
    ['title ~ "open) OR (space = "ENG"', /string opened by " at position 32 that never closes/],
    ["title ~ 'open", /string opened by ' at position 9 that never closes/],
    ['title ~ "ends in a backslash\\', /string opened by " at position 9 that never closes/],
  ]
  for (const [cql, why] of refused) t.match(cqlProblem(cql), why, cql)
})

t.test('checkSourceCql names the field; createSource checks before it stores', async (t) => {
  t.doesNotThrow(() => checkSourceCql(undefined, 'body/cql'), 'no cql: nothing to check')
  t.doesNotThrow(() => checkSourceCql('label = "x"', 'body/cql'))
  t.throws(() => checkSourceCql('a = "b") OR (space = "ENG"', 'body/cql'), {
    name: 'SourceInputError',
    message: /^body\/cql has a "\)" at position 8 .*must balance outside quoted strings$/,
  })
  // Redis is never touched: the name is not claimed for a source that is refused.
  const redis = new Proxy({} as Redis, {
    get: (_target, name) => {
      throw new Error(`Redis was used (${String(name)})`)
    },
  })
  const refused = createSource(redis, {
    name: 'From the CLI',
    kind: 'cloud',
    base_url: 'https://acme.atlassian.net/wiki',
    spaces: ['DOC'],
    cql: 'title ~ "Page 1") OR (space = "ENG"',
  })
  await t.rejects(refused, SourceInputError)
  await t.rejects(refused, { message: /^cql has a "\)" at position 17/ })
})

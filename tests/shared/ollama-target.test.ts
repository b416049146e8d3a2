import { ollamaEndpoint, ollamaTarget, scrub } from '@confluence-bot/shared'
import t from 'tap'

t.test('OLLAMA_URL: user info becomes a Basic header, the query goes on every path', async (t) => {
  const plain = ollamaTarget('http://127.0.0.1:11434/')
  t.same(plain, {
    origin: 'http://127.0.0.1:11434',
    basePath: '',
    query: '',
    headers: {},
    secrets: [],
  })
  t.equal(ollamaEndpoint(plain, '/api/version'), 'http://127.0.0.1:11434/api/version')

  const guarded = ollamaTarget(
    'https://bot%40acme:p%C3%A4ss@ollama.acme.test/ollama/?token=abc&x=1',
  )
  t.equal(guarded.origin, 'https://ollama.acme.test')
  t.equal(guarded.basePath, '/ollama')
  t.equal(guarded.query, '?token=abc&x=1')
  const basic = String(guarded.headers.authorization)
  t.match(basic, /^Basic /)
  t.equal(Buffer.from(basic.slice(6), 'base64').toString('utf8'), 'bot@acme:päss', 'decoded')
  const endpoint = ollamaEndpoint(guarded, '/api/tags')
  t.equal(endpoint, 'https://ollama.acme.test/ollama/api/tags?token=abc&x=1')
  t.notMatch(endpoint, /bot|p%C3/, 'no credentials in the URL itself')

  t.same(
    ollamaTarget('http://u:50%zz@h:1').headers,
    {
      authorization: `Basic ${Buffer.from('u:50%zz').toString('base64')}`,
    },
    'an escape that is not one is kept as written',
  )
  t.same(ollamaTarget('http://only-user@h:1').headers, {
    authorization: `Basic ${Buffer.from('only-user:').toString('base64')}`,
  })
})

t.test('scrub hides every part of the credential that an answer may quote', async (t) => {
  const target = ollamaTarget('http://gw:p%40ssw0rd@h:1/?token=abc%2Bdef&v=1&key=x+y+z')
  const basic = String(target.headers.authorization).slice(6)
  const quoted = `GET /api/tags?token=abc%2Bdef&v=1 token abc+def pass p@ssw0rd p%40ssw0rd auth ${basic} key x y z`
  t.equal(
    scrub(target, quoted),
    'GET /api/tags?token=***&v=1 token *** pass *** *** auth *** key ***',
    'raw and decoded forms; a value too short to be a secret is left',
  )
  t.equal(scrub(ollamaTarget('http://h:1'), 'nothing to hide'), 'nothing to hide')
})

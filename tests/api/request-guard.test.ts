import t from 'tap'
import { hostPolicy, originPolicy } from '../../services/api/src/plugins/app/request-guard.ts'

// The Host and Origin rules on their own (each is also proven over real sockets in
// front-door.test.ts): which binds count as loopback, and what `*` opens.

t.test('a loopback bind answers to local names and IP addresses only', async (t) => {
  for (const bind of ['127.0.0.1', '127.0.0.2', 'localhost', '::1', '[::1]', 'LOCALHOST']) {
    const allowed = hostPolicy(bind, '')
    t.ok(allowed('localhost:3000'), `${bind}: localhost`)
    t.ok(allowed('10.1.2.3:3000'), `${bind}: an IP address`)
    t.notOk(allowed('wiki.attacker.example'), `${bind}: another name`)
  }
})

t.test('any other bind answers to any name, unless names are listed', async (t) => {
  const open = hostPolicy('0.0.0.0', '')
  t.ok(open('bot.acme.test'))
  t.ok(open('rebind.attacker.example:3000'))
  const listed = hostPolicy('0.0.0.0', 'bot.acme.test, Other.Acme.Test')
  t.ok(listed('bot.acme.test:443'))
  t.ok(listed('other.acme.test'))
  t.ok(listed('10.0.0.7:3000'), 'probes use the pod IP')
  t.notOk(listed('rebind.attacker.example'))
  t.ok(hostPolicy('127.0.0.1', '*')('anything.example'), '* opens every name')
})

t.test(
  'without keys, any bind answers to local names and IPs only, unless names are listed',
  async (t) => {
    const open = hostPolicy('0.0.0.0', '', false)
    t.notOk(open('rebind.attacker.example:3000'), 'a rebinding page gets nothing')
    t.ok(open('localhost:3000'))
    t.ok(open('192.168.1.20:3000'), 'reached by IP from the network')
    const listed = hostPolicy('0.0.0.0', 'bot.acme.test', false)
    t.ok(listed('bot.acme.test'))
    t.notOk(listed('rebind.attacker.example'))
    t.ok(hostPolicy('0.0.0.0', '*', false)('anything.example'), '* still opens every name')
  },
)

t.test('origins: the API its own, listed ones, or every one with *', async (t) => {
  const own = originPolicy('https://wiki.acme.com/')
  t.ok(own('http://127.0.0.1:3000', '127.0.0.1:3000'))
  t.ok(own('https://wiki.acme.com', 'bot.acme.com'), 'listed (a trailing slash is ignored)')
  t.notOk(own('https://evil.example', 'bot.acme.com'))
  t.notOk(own('null', 'bot.acme.com'))
  t.notOk(own('https://bot.acme.com', undefined), 'no Host to be the same as')
  t.ok(originPolicy('*')('https://evil.example', 'bot.acme.com'))
})

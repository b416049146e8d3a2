import {
  checkSourceHost,
  isAllowedHost,
  isInternalAddress,
  SourceHostError,
} from '@confluence-bot/shared'
import t from 'tap'

// Cases the mutation run (`pnpm bench mutation`, group hosts) showed unguarded: the base_url's
// own refusals, IPv4 octets of several digits inside IPv6, the prefixes that only look like the
// IPv4-mapped or NAT64 ones, the default port of http, and the default resolver.

const noDns = () => Promise.reject(new Error('no DNS expected'))

t.test('a base_url that is not a URL, not http(s) or carries credentials is refused', async (t) => {
  for (const [url, message] of [
    ['not a url', /not a valid URL/],
    ['ftp://wiki.example.com', /must start with http:\/\/ or https:\/\/ \(it uses ftp:\)/],
    ['https://user@wiki.example.com', /must not contain a user name or password/],
    ['https://:secret@wiki.example.com', /must not contain a user name or password/],
    ['https://user:secret@wiki.example.com', /must not contain a user name or password/],
  ] as const) {
    await t.rejects(checkSourceHost(url, 'wiki.example.com', noDns), SourceHostError, url)
    await t.rejects(checkSourceHost(url, 'wiki.example.com', noDns), { message }, url)
  }
})

t.test('IPv4 octets of several digits inside IPv6 are read whole', async (t) => {
  for (const address of ['64:ff9b::93.184.216.34', '::ffff:93.184.216.34', '::ffff:8.8.8.8%eth0']) {
    t.equal(isInternalAddress(address), false, address)
  }
  for (const address of ['64:ff9b::10.100.200.1', '::ffff:192.168.100.200']) {
    t.equal(isInternalAddress(address), true, address)
  }
})

t.test('only the exact mapped and NAT64 prefixes embed an IPv4 address', async (t) => {
  // Global unicast with ffff in the sixth group, or ff9b in the second: judged as IPv6.
  t.equal(isInternalAddress('2606:4700::ffff:a00:1'), false)
  t.equal(isInternalAddress('2606:ff9b::a00:1'), false)
  // Inside ::/8 (reserved) whatever the low bits say.
  t.equal(isInternalAddress('::1:808:808'), true)
  t.equal(isInternalAddress('64:1::808:808'), true)
})

t.test('the message names a literal address once, a resolved one with its host', async (t) => {
  await t.rejects(checkSourceHost('http://10.0.0.1', '', noDns), {
    message: /names 10\.0\.0\.1, a loopback/,
  })
  await t.rejects(
    checkSourceHost('http://wiki.example.com', '', async () => [
      { address: '10.0.0.1', family: 4 },
    ]),
    { message: /names wiki\.example\.com \(10\.0\.0\.1\), a loopback/ },
  )
})

t.test('an http URL without a port is allowed as host:80, https as host:443', async (t) => {
  t.ok(isAllowedHost('http://wiki.internal/x', 'wiki.internal:80'))
  t.notOk(isAllowedHost('http://wiki.internal/x', 'wiki.internal:443'))
  t.notOk(isAllowedHost('https://wiki.internal/x', 'wiki.internal:80'))
})

t.test('the default resolver is dns.lookup with every answer', async (t) => {
  // localhost resolves from the hosts file, without a network.
  await t.rejects(checkSourceHost('http://localhost:8090', ''), {
    name: 'SourceHostError',
    message: /names localhost \(/,
  })
})

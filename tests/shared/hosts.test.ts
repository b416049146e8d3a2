import {
  checkedAddresses,
  checkSourceHost,
  isAllowedHost,
  isInternalAddress,
  type ResolveHost,
  SourceHostError,
} from '@confluence-bot/shared'
import t from 'tap'

// Where a source may point: every address block that is not globally reachable is refused,
// whichever of a host's DNS answers falls in it. DNS is a stub here.

t.test('internal: every special-purpose block, at its edges', async (t) => {
  const internal = {
    'this network 0.0.0.0/8': ['0.0.0.0', '0.255.255.255'],
    'private 10/8, 172.16/12, 192.168/16': [
      '10.0.0.0',
      '10.255.255.255',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.0.1',
    ],
    'shared (carrier NAT) 100.64.0.0/10, cloud metadata': [
      '100.64.0.0',
      '100.100.100.200',
      '100.127.255.255',
    ],
    'loopback 127/8': ['127.0.0.1', '127.255.255.254'],
    'link-local 169.254/16': ['169.254.169.254', '169.254.0.1'],
    'IETF protocol assignments 192.0.0.0/24': ['192.0.0.8', '192.0.0.170'],
    'documentation 192.0.2/24, 198.51.100/24, 203.0.113/24': [
      '192.0.2.1',
      '198.51.100.7',
      '203.0.113.255',
    ],
    '6to4 relay anycast 192.88.99.0/24': ['192.88.99.1'],
    'benchmarking 198.18.0.0/15': ['198.18.0.0', '198.19.255.255'],
    'multicast 224.0.0.0/4': ['224.0.0.1', '239.255.255.250'],
    'reserved 240.0.0.0/4 and broadcast': ['240.0.0.1', '255.255.255.255'],
    'IPv6 unspecified, loopback, IPv4-compatible ::/96': ['::', '::1', '::a00:1', '::8.8.8.8'],
    'IPv4-mapped with an internal IPv4': [
      '::ffff:10.0.0.1',
      '::ffff:a00:1',
      '::ffff:127.0.0.1',
      '::ffff:100.100.100.200',
      '::ffff:a9fe:a9fe',
      '0:0:0:0:0:ffff:c0a8:0101',
    ],
    'IPv4-translated ::ffff:0:0:0/96': ['::ffff:0:808:808'],
    'NAT64 64:ff9b::/96 with an internal IPv4': ['64:ff9b::a00:1', '64:ff9b::169.254.169.254'],
    'local-use NAT64 64:ff9b:1::/48': ['64:ff9b:1::808:808', '64:ff9b:1:ffff::1'],
    'discard 100::/64': ['100::1', '100::ffff:ffff:ffff:ffff'],
    'IETF 2001::/23, Teredo 2001::/32': ['2001::1', '2001:0:4136:e378::1', '2001:1ff::1'],
    'documentation 2001:db8::/32, 3fff::/20': ['2001:db8::1', '3fff:fff::1'],
    '6to4 2002::/16': ['2002:a00:1::1', '2002:808:808::1'],
    'SRv6 5f00::/16': ['5f00::1'],
    'unique local fc00::/7': ['fc00::1', 'fdff:ffff::1'],
    'link-local fe80::/10 (with a zone)': ['fe80::1', 'febf::1', 'fe80::1%eth0'],
    'site-local fec0::/10': ['fec0::1', 'feff::1'],
    'multicast ff00::/8': ['ff02::1', 'ff0e::1'],
    'outside global unicast 2000::/3': ['64:ff9a::a00:1', '1::', '1fff:ffff::1', '4000::1'],
  }
  for (const [block, addresses] of Object.entries(internal)) {
    for (const address of addresses) t.ok(isInternalAddress(address), `${block}: ${address}`)
  }
  for (const address of [
    '8.8.8.8',
    '1.1.1.1',
    '9.255.255.255',
    '11.0.0.0',
    '100.63.255.255',
    '100.128.0.0',
    '126.255.255.255',
    '128.0.0.0',
    '172.15.255.255',
    '172.32.0.1',
    '192.0.1.1',
    '192.169.0.1',
    '198.17.255.255',
    '198.20.0.0',
    '223.255.255.255',
    '::ffff:8.8.8.8',
    '::ffff:808:808',
    '64:ff9b::8.8.8.8',
    '64:ff9b::5db8:d822',
    '2000::1',
    '2001:200::1',
    '3ffe:ffff::1',
    '2001:4860:4860::8888',
    '2600:1f18::1',
    '2606:4700:4700::1111',
    'not-an-ip',
    '',
  ]) {
    t.notOk(isInternalAddress(address), address)
  }
})

/** A resolver with fixed answers, counting its calls. */
function stub(...addresses: string[]) {
  const calls: string[] = []
  const resolve: ResolveHost = async (host) => {
    calls.push(host)
    return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }))
  }
  return { resolve, calls }
}

t.test('every DNS answer is checked, not only the first', async (t) => {
  for (const answers of [
    ['93.184.216.34', '10.0.0.1'],
    ['10.0.0.1', '93.184.216.34'],
    ['93.184.216.34', '2606:4700::1111', '::ffff:127.0.0.1'],
    ['2606:4700::1111', '93.184.216.34', '100.100.100.200'],
    ['93.184.216.34', '64:ff9b::a9fe:a9fe'],
  ]) {
    const dns = stub(...answers)
    const internal = answers.find(isInternalAddress) as string
    await t.rejects(
      checkSourceHost('https://wiki.example.com/wiki', '', dns.resolve),
      {
        name: 'SourceHostError',
        fatal: true,
        message:
          `The source base_url names wiki.example.com (${internal}), a loopback, private, ` +
          'link-local or other non-public address; add "wiki.example.com" to CONFLUENCE_ALLOWED_HOSTS to allow it',
      },
      answers.join(' '),
    )
    t.same(dns.calls, ['wiki.example.com'])
  }
  const fine = stub('93.184.216.34', '2606:4700::1111', '64:ff9b::5db8:d822')
  await t.resolves(checkSourceHost('https://wiki.example.com', '', fine.resolve))
  t.same(
    await checkedAddresses('wiki.example.com', 'x', fine.resolve),
    [
      { address: '93.184.216.34', family: 4 },
      { address: '2606:4700::1111', family: 6 },
      { address: '64:ff9b::5db8:d822', family: 6 },
    ],
    'every checked address is handed back',
  )
})

t.test('literal addresses are judged without DNS; allowed hosts without any check', async (t) => {
  const dns = stub('10.0.0.1')
  for (const url of [
    'http://100.100.100.200/latest/meta-data',
    'http://100.64.1.1',
    'http://198.18.0.1',
    'http://224.0.0.1',
    'http://240.0.0.1',
    'http://255.255.255.255',
    'http://[fec0::1]',
    'http://[64:ff9b::a00:1]',
    'http://[2002:a00:1::1]',
    'http://[::ffff:10.0.0.1]',
    'http://[::ffff:a00:1]:8090',
    'http://[2001:db8::1]',
    'http://0x7f.1', // WHATWG URL reads it as 127.0.0.1
  ]) {
    await t.rejects(checkSourceHost(url, '', dns.resolve), SourceHostError, url)
  }
  await t.resolves(checkSourceHost('http://[64:ff9b::808:808]', '', dns.resolve))
  await t.resolves(checkSourceHost('http://100.100.100.200', '100.100.100.200', dns.resolve))
  await t.resolves(checkSourceHost('http://wiki.internal:8090', 'wiki.internal', dns.resolve))
  t.same(dns.calls, [], 'no lookup for literals or allowed hosts')
  await t.rejects(checkSourceHost('http://wiki.internal:8090', 'other', dns.resolve), {
    message: /"wiki\.internal:8090" to CONFLUENCE_ALLOWED_HOSTS/,
  })
})

t.test('resolver failures: NXDOMAIN is final, anything else worth a retry', async (t) => {
  const failing =
    (code: string): ResolveHost =>
    async () => {
      throw Object.assign(new Error(`getaddrinfo ${code}`), { code })
    }
  const nx = (await checkSourceHost('https://wiki.example.com', '', failing('ENOTFOUND')).catch(
    (e: unknown) => e,
  )) as SourceHostError
  t.equal(nx.fatal, true)
  t.equal(
    nx.message,
    "Could not resolve the source host wiki.example.com (ENOTFOUND): check the source's base_url",
  )
  t.match(nx.cause, { code: 'ENOTFOUND' })
  await t.rejects(checkSourceHost('https://wiki.example.com', '', failing('EAI_AGAIN')), {
    message: /\(EAI_AGAIN\)/,
    fatal: false,
  })
})

t.test('allowed hosts: by name or name:port, brackets optional for IPv6', async (t) => {
  t.ok(isAllowedHost('http://wiki.internal:8090/x', 'a, WIKI.internal'))
  t.ok(isAllowedHost('https://wiki.internal/x', 'wiki.internal:443'))
  t.ok(isAllowedHost('http://[fd00::1]:8090', '[fd00::1]:8090'))
  t.ok(isAllowedHost('http://[fd00::1]:8090', 'fd00::1'))
  t.notOk(isAllowedHost('http://wiki.internal:8091', 'wiki.internal:8090'))
  t.notOk(isAllowedHost('http://wiki.internal', ''))
})

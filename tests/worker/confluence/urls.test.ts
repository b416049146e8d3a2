import t from 'tap'
import type { ConfluenceError } from '../../../services/worker/src/confluence/errors.ts'
import {
  checkBaseUrl,
  isInternalAddress,
  normalizeBaseUrl,
  v1Link,
  v2Link,
} from '../../../services/worker/src/confluence/urls.ts'

t.test('internal addresses', async (t) => {
  for (const address of [
    '127.0.0.1',
    '127.9.9.9',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '0.0.0.0',
    '::1',
    '::',
    'fd00::1',
    'fc12::1',
    'fe80::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
  ]) {
    t.ok(isInternalAddress(address), address)
  }
  for (const address of ['8.8.8.8', '172.32.0.1', '192.169.0.1', '2600:1f18::1', 'not-an-ip']) {
    t.notOk(isInternalAddress(address), address)
  }
})

t.test('checkBaseUrl refuses loopback, private and link-local hosts unless allowed', async (t) => {
  for (const url of [
    'http://127.0.0.1:8090/confluence',
    'https://10.0.0.5/wiki',
    'http://169.254.169.254/latest',
    'http://[::1]:8090',
    'http://localhost:8090',
  ]) {
    const err = (await checkBaseUrl(url, '').catch((e: unknown) => e)) as ConfluenceError
    t.equal(err.code, 'config', url)
    t.ok(err.fatal)
    t.match(err.message, /loopback, private, link-local or other non-public address/)
    t.match(err.message, 'CONFLUENCE_ALLOWED_HOSTS')
  }
  const named = (await checkBaseUrl('http://localhost:8090', '').catch((e) => e)) as Error
  t.match(named.message, /localhost \((127\.0\.0\.1|::1)\)/, 'a name shows what it resolved to')
  t.match(named.message, '"localhost:8090"', 'suggests the entry to add')

  await t.resolves(checkBaseUrl('http://127.0.0.1:8090/confluence', '127.0.0.1'))
  await t.resolves(checkBaseUrl('http://127.0.0.1:8090/confluence', ' wiki.x , 127.0.0.1:8090'))
  await t.rejects(checkBaseUrl('http://127.0.0.1:8091/confluence', '127.0.0.1:8090'))
  await t.resolves(checkBaseUrl('https://10.0.0.5/wiki/', '10.0.0.5:443'), 'default port')
  await t.resolves(checkBaseUrl('http://10.0.0.5/', '10.0.0.5:80'))
  await t.resolves(checkBaseUrl('http://[::1]:8090', '::1'))
  await t.resolves(checkBaseUrl('http://[::1]:8090', '[::1]:8090'))
  await t.resolves(checkBaseUrl('http://LOCALHOST:8090', 'localhost'))
  await t.resolves(checkBaseUrl('https://8.8.8.8/wiki', ''), 'public address literal')
})

t.test('checkBaseUrl: scheme, credentials, unresolvable hosts', async (t) => {
  await t.rejects(checkBaseUrl('ftp://wiki.example.com', ''), {
    code: 'config',
    message: /http:\/\/ or https:\/\/ \(it uses ftp:\)/,
  })
  await t.rejects(checkBaseUrl('not a url', ''), { code: 'config', message: /not a valid URL/ })
  const err = (await checkBaseUrl('https://bot:s3cret@wiki.example.com', '').catch(
    (e: unknown) => e,
  )) as ConfluenceError
  t.equal(err.code, 'config')
  t.notMatch(err.message, 's3cret')
  t.match(err.message, "source's credentials")
  // .invalid never resolves (RFC 2606); without DNS the lookup fails another way.
  const dns = (await checkBaseUrl('https://wiki.invalid', '').catch(
    (e: unknown) => e,
  )) as ConfluenceError
  t.equal(dns.code, 'network')
  t.match(dns.message, /Could not resolve the source host wiki\.invalid \(E[A-Z_]+\): check/)
  const resolver = (dns.cause as Error).cause as NodeJS.ErrnoException
  t.equal(dns.fatal, resolver.code === 'ENOTFOUND')
})

t.test('relative links: v1 from the base, v2 from the origin', async (t) => {
  t.equal(normalizeBaseUrl(' https://x.atlassian.net/wiki// '), 'https://x.atlassian.net/wiki')
  const cloud = 'https://x.atlassian.net/wiki'
  t.equal(v1Link(cloud, '/rest/api/content?start=2'), `${cloud}/rest/api/content?start=2`)
  t.equal(v1Link(cloud, 'rest/api/x'), `${cloud}/rest/api/x`)
  t.equal(v1Link(cloud, 'https://x.atlassian.net/wiki/a'), 'https://x.atlassian.net/wiki/a')
  t.equal(
    v2Link(cloud, '/wiki/api/v2/spaces/1/pages?cursor=a'),
    'https://x.atlassian.net/wiki/api/v2/spaces/1/pages?cursor=a',
  )
  t.equal(v2Link('http://h:1', '/api/v2/pages?cursor=a'), 'http://h:1/api/v2/pages?cursor=a')
  t.equal(v2Link('http://h:1/', 'api/v2/pages'), 'http://h:1/api/v2/pages')
  const gateway = 'https://api.atlassian.com/ex/confluence/abc/wiki'
  t.equal(
    v2Link(gateway, '/wiki/api/v2/pages?cursor=a'),
    'https://api.atlassian.com/ex/confluence/abc/wiki/api/v2/pages?cursor=a',
  )
  t.equal(
    v2Link(gateway, '/ex/confluence/abc/wiki/api/v2/pages'),
    'https://api.atlassian.com/ex/confluence/abc/wiki/api/v2/pages',
  )
  t.equal(v2Link(cloud, '/other/path'), 'https://x.atlassian.net/other/path')
  t.equal(v2Link(cloud, 'https://elsewhere/x'), 'https://elsewhere/x')
})

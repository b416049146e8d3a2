import { lookup } from 'node:dns/promises'
import { BlockList, isIP } from 'node:net'
import { ConfluenceError } from './errors.ts'

// Where a source may point, and how Confluence's relative links resolve (reference §1).

// A base_url is supplied by whoever registers a source; without this check the worker would send
// authenticated requests to anything on its own network (cloud metadata endpoints included).
const INTERNAL = new BlockList()
INTERNAL.addSubnet('0.0.0.0', 8, 'ipv4') // "this host": connecting to 0.0.0.0 reaches loopback
INTERNAL.addSubnet('10.0.0.0', 8, 'ipv4')
INTERNAL.addSubnet('127.0.0.0', 8, 'ipv4')
INTERNAL.addSubnet('169.254.0.0', 16, 'ipv4')
INTERNAL.addSubnet('172.16.0.0', 12, 'ipv4')
INTERNAL.addSubnet('192.168.0.0', 16, 'ipv4')
INTERNAL.addAddress('::', 'ipv6')
INTERNAL.addAddress('::1', 'ipv6')
INTERNAL.addSubnet('fc00::', 7, 'ipv6')
INTERNAL.addSubnet('fe80::', 10, 'ipv6')

/** Loopback, private (RFC 1918, fc00::/7), link-local or unspecified; IPv4-mapped IPv6 too. */
export function isInternalAddress(address: string): boolean {
  const family = isIP(address)
  return family !== 0 && INTERNAL.check(address, family === 4 ? 'ipv4' : 'ipv6')
}

/** The base URL without trailing slashes: `https://acme.atlassian.net/wiki`. */
export function normalizeBaseUrl(url: string): string {
  return url.trim().replace(/\/+$/, '')
}

function allowed(url: URL, allowedHosts: string): boolean {
  const host = url.hostname.toLowerCase()
  const bare = host.replace(/^\[|\]$/g, '')
  const port = url.port || (url.protocol === 'https:' ? '443' : '80')
  const names = new Set([host, bare, `${host}:${port}`, `${bare}:${port}`])
  return allowedHosts
    .split(',')
    .map((entry) => entry.trim().toLowerCase())
    .some((entry) => entry !== '' && names.has(entry))
}

/**
 * Refuses a base_url that is not http(s), carries credentials, or names a host that is (or
 * resolves to) an internal address, unless CONFLUENCE_ALLOWED_HOSTS lists it (`host` or
 * `host:port`, comma-separated). Throws a fatal ConfluenceError 'config' saying what to change;
 * a host that does not resolve gives 'network'.
 */
export async function checkBaseUrl(url: string, allowedHosts: string): Promise<void> {
  let parsed: URL
  try {
    parsed = new URL(normalizeBaseUrl(url))
  } catch {
    throw new ConfluenceError('config', 'The source base_url is not a valid URL')
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ConfluenceError(
      'config',
      `The source base_url must start with http:// or https:// (it uses ${parsed.protocol})`,
    )
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw new ConfluenceError(
      'config',
      "The source base_url must not contain a user name or password: give them as the source's credentials",
    )
  }
  if (allowed(parsed, allowedHosts)) return
  const host = parsed.hostname.replace(/^\[|\]$/g, '')
  let addresses: string[]
  if (isIP(host) !== 0) {
    addresses = [host]
  } else {
    try {
      addresses = (await lookup(host, { all: true, verbatim: true })).map((a) => a.address)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      throw new ConfluenceError(
        'network',
        `Could not resolve the source host ${host} (${code}): check the source's base_url`,
        { fatal: code === 'ENOTFOUND', cause: err },
      )
    }
  }
  const internal = addresses.find(isInternalAddress)
  if (internal !== undefined) {
    const named = internal === host ? host : `${host} (${internal})`
    throw new ConfluenceError(
      'config',
      `The source base_url names ${named}, a loopback, private or link-local address; ` +
        `add "${parsed.host}" to CONFLUENCE_ALLOWED_HOSTS to allow it`,
    )
  }
}

/** A v1 link (`_links.next`, `webui`): relative to the base, which includes /wiki or the DC context. */
export function v1Link(base: string, link: string): string {
  if (/^https?:\/\//i.test(link)) return link
  return `${base}${link.startsWith('/') ? '' : '/'}${link}`
}

/**
 * A v2 `_links.next`: relative to the site origin and starting with the context (`/wiki/api/v2/…`).
 * Behind the API gateway (`https://api.atlassian.com/ex/confluence/<cloudId>/wiki`) the link still
 * starts with `/wiki/`, so the part of the base before its last segment is put back in front.
 */
export function v2Link(base: string, next: string): string {
  if (/^https?:\/\//i.test(next)) return next
  const { origin, pathname } = new URL(base)
  const path = pathname.replace(/\/+$/, '')
  const link = next.startsWith('/') ? next : `/${next}`
  if (path === '' || link.startsWith(`${path}/`)) return `${origin}${link}`
  const context = path.slice(path.lastIndexOf('/'))
  if (link.startsWith(`${context}/`)) return `${origin}${path.slice(0, -context.length)}${link}`
  return `${origin}${link}`
}

import { lookup } from 'node:dns/promises'
import { BlockList, isIP } from 'node:net'

// Where a source may point: checked by the api when a source is registered, and by the worker
// on every connection it opens, on the addresses it connects to (DNS may answer otherwise by
// then: a host that rebinds to an internal address after the check gets no connection).

export class SourceHostError extends Error {
  override name = 'SourceHostError'
  /** false: a transient resolver failure, worth retrying. */
  readonly fatal: boolean
  constructor(message: string, options: { fatal?: boolean; cause?: unknown } = {}) {
    super(message, { cause: options.cause })
    this.fatal = options.fatal ?? true
  }
}

// A base_url is supplied by whoever registers a source; without this check the worker would send
// authenticated requests to anything on its own network (cloud metadata endpoints included).
// Every IANA special-purpose block that is not globally reachable is refused, with multicast and
// the reserved 240.0.0.0/4 (broadcast included). Addresses that carry an IPv4 address inside
// an IPv6 one are judged by it where the translation is fixed (IPv4-mapped ::ffff:0:0/96, NAT64's
// well-known 64:ff9b::/96, which DNS64 answers for IPv4-only hosts); the other transition
// ranges (IPv4-compatible ::/96, local-use NAT64, 6to4, Teredo) are refused whole: they are
// deprecated or site-specific, and no Confluence is reached through them.
const INTERNAL_V4 = new BlockList()
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network": connecting to 0.0.0.0 reaches loopback
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // shared address space (carrier NAT), 100.100.100.200 cloud metadata
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, 169.254.169.254 cloud metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // TEST-NET-1
  ['192.88.99.0', 24], // 6to4 relay anycast (deprecated)
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // TEST-NET-2
  ['203.0.113.0', 24], // TEST-NET-3
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, 255.255.255.255 broadcast
] as const) {
  INTERNAL_V4.addSubnet(network, prefix, 'ipv4')
}

// IPv6: only global unicast (2000::/3) is public; outside it lie unique local fc00::/7,
// link-local fe80::/10, site-local fec0::/10, multicast ff00::/8, discard 100::/64, local-use
// NAT64 64:ff9b:1::/48, IPv4-translated ::ffff:0:0:0/96, SRv6 5f00::/16 and unassigned space.
// These are the blocks inside it that are not globally reachable:
const INTERNAL_V6 = new BlockList()
for (const [network, prefix] of [
  ['2001::', 23], // IETF protocol assignments: Teredo 2001::/32, benchmarking, ORCHID
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4
  ['3fff::', 20], // documentation
] as const) {
  INTERNAL_V6.addSubnet(network, prefix, 'ipv6')
}

/** The eight 16-bit groups of an IPv6 address (isIP() === 6): `::` expanded, a dotted tail read. */
function ipv6Groups(address: string): number[] {
  let text = address.replace(/%.*$/, '') // zone id
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (quad !== null) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number]
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const groups = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)))
  const [head, tail] = text.split('::') as [string, string | undefined]
  if (tail === undefined) return groups(head)
  const left = groups(head)
  const right = groups(tail)
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right]
}

/** The IPv4 address in the last 32 bits of IPv6 groups. */
const embeddedIpv4 = (g: number[]) =>
  [g[6], g[7]].flatMap((n) => [(n as number) >> 8, (n as number) & 0xff]).join('.')

/**
 * Loopback, private, link-local, shared (carrier NAT), multicast, reserved, documentation and
 * the other IANA special-purpose addresses that are not globally reachable, in IPv4 and IPv6;
 * an IPv4 address inside an IPv4-mapped or NAT64 IPv6 address is judged as itself.
 */
export function isInternalAddress(address: string): boolean {
  const family = isIP(address)
  if (family === 0) return false
  if (family === 4) return INTERNAL_V4.check(address, 'ipv4')
  const g = ipv6Groups(address)
  const zeros = (from: number, to: number) => g.slice(from, to).every((n) => n === 0)
  // ::/96: unspecified, loopback and the deprecated IPv4-compatible addresses.
  if (zeros(0, 6)) return true
  // IPv4-mapped (::ffff:0:0/96) and NAT64's well-known prefix (64:ff9b::/96).
  if ((zeros(0, 5) && g[5] === 0xffff) || (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6))) {
    return INTERNAL_V4.check(embeddedIpv4(g), 'ipv4')
  }
  if ((g[0] as number) >> 13 !== 0b001) return true
  return INTERNAL_V6.check(g.map((n) => n.toString(16)).join(':'), 'ipv6')
}

/** Resolves a host name to every address it has (dns.lookup with `all`, in resolver order). */
export type ResolveHost = (host: string) => Promise<Array<{ address: string; family: number }>>

export const resolveHost: ResolveHost = (host) => lookup(host, { all: true, verbatim: true })

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

/** Whether CONFLUENCE_ALLOWED_HOSTS lists the host of a URL (`host` or `host:port`). */
export function isAllowedHost(url: string, allowedHosts: string): boolean {
  return allowed(new URL(url), allowedHosts)
}

/**
 * Every address of a host, once each of them was checked: a host name is resolved (`resolve`,
 * dns.lookup by default) and refused if any of its answers is internal, since a connection may
 * use any of them. Throws a SourceHostError (`fatal` false only for a resolver failure other than
 * NXDOMAIN); `allowAs` is the CONFLUENCE_ALLOWED_HOSTS entry to suggest.
 */
export async function checkedAddresses(
  host: string,
  allowAs: string,
  resolve: ResolveHost = resolveHost,
): Promise<Array<{ address: string; family: number }>> {
  let addresses: Array<{ address: string; family: number }>
  const family = isIP(host)
  if (family !== 0) {
    addresses = [{ address: host, family }]
  } else {
    try {
      addresses = await resolve(host)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      throw new SourceHostError(
        `Could not resolve the source host ${host} (${code}): check the source's base_url`,
        { fatal: code === 'ENOTFOUND', cause: err },
      )
    }
  }
  const internal = addresses.find((a) => isInternalAddress(a.address))
  if (internal !== undefined) {
    const named = internal.address === host ? host : `${host} (${internal.address})`
    throw new SourceHostError(
      `The source base_url names ${named}, a loopback, private, link-local or other non-public ` +
        `address; add "${allowAs}" to CONFLUENCE_ALLOWED_HOSTS to allow it`,
    )
  }
  return addresses
}

/**
 * Refuses a base_url that is not http(s), carries credentials, or names a host that is (or
 * resolves to) an internal address, unless CONFLUENCE_ALLOWED_HOSTS lists it (`host` or
 * `host:port`, comma-separated). Throws a SourceHostError saying what to change
 * (`fatal` false only for a host name that failed to resolve for another reason than NXDOMAIN).
 * The worker checks again on every connection it opens (DNS may answer otherwise by then).
 */
export async function checkSourceHost(
  url: string,
  allowedHosts: string,
  resolve: ResolveHost = resolveHost,
): Promise<void> {
  let parsed: URL
  try {
    parsed = new URL(url.trim().replace(/\/+$/, ''))
  } catch {
    throw new SourceHostError('The source base_url is not a valid URL')
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new SourceHostError(
      `The source base_url must start with http:// or https:// (it uses ${parsed.protocol})`,
    )
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw new SourceHostError(
      "The source base_url must not contain a user name or password: give them as the source's credentials",
    )
  }
  if (allowed(parsed, allowedHosts)) return
  await checkedAddresses(parsed.hostname.replace(/^\[|\]$/g, ''), parsed.host, resolve)
}

import type { LookupFunction } from 'node:net'
import { checkedAddresses, type ResolveHost, resolveHost } from '@confluence-bot/shared'

// The `lookup` of every socket a source's HTTP client opens. The base_url's host was checked
// when the source was registered and before the first request, but each new connection resolves
// the name again, and a host can answer a public address to the check and an internal one to
// the connection (DNS rebinding). So the check runs here, on the answers the socket will use:
// it gets only addresses that were checked, or an error and no connection at all.

export type PinnedLookupOptions = {
  /** CONFLUENCE_ALLOWED_HOSTS lists the source's host: its addresses are not checked. */
  allowed: boolean
  /** The CONFLUENCE_ALLOWED_HOSTS entry a refusal suggests (`host:port`). */
  allowAs: string
  /** Tests stub DNS; dns.lookup otherwise. */
  resolve?: ResolveHost | undefined
}

export function pinnedLookup(options: PinnedLookupOptions): LookupFunction {
  const resolve = options.resolve ?? resolveHost
  return (hostname, dnsOptions, callback) => {
    const answers = options.allowed
      ? resolve(hostname)
      : checkedAddresses(hostname, options.allowAs, resolve)
    answers.then(
      (addresses) => {
        const family = dnsOptions.family
        const usable =
          family === 4 || family === 6 ? addresses.filter((a) => a.family === family) : addresses
        const first = usable[0]
        if (first === undefined) {
          const err: NodeJS.ErrnoException = new Error(`${hostname} has no usable address`)
          err.code = 'ENOTFOUND'
          callback(err, '', 0)
        } else if (dnsOptions.all === true) {
          callback(null, usable)
        } else {
          callback(null, first.address, first.family)
        }
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    )
  }
}

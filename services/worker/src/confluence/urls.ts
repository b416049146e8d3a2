import { checkSourceHost, type ResolveHost, type SourceHostError } from '@confluence-bot/shared'
import { ConfluenceError } from './errors.ts'

// Where a source may point, and how Confluence's relative links resolve (reference §1).

export { isInternalAddress } from '@confluence-bot/shared'

/** The base URL without trailing slashes: `https://acme.atlassian.net/wiki`. */
export function normalizeBaseUrl(url: string): string {
  return url.trim().replace(/\/+$/, '')
}

/**
 * A refused source host as a ConfluenceError: 'config' (fatal) saying what to change, or
 * 'network' when the host does not resolve (fatal only for NXDOMAIN).
 */
export function hostError(refused: SourceHostError): ConfluenceError {
  // Only a resolver failure carries a cause.
  const code = refused.cause === undefined ? 'config' : 'network'
  return new ConfluenceError(code, refused.message, { fatal: refused.fatal, cause: refused })
}

/**
 * The API's check when a source is registered (shared `checkSourceHost`), run again before the
 * first request since DNS may have changed since: refuses a base_url that is not http(s),
 * carries credentials, or names a host that is (or resolves to) a loopback, private, link-local
 * or other non-public address unless CONFLUENCE_ALLOWED_HOSTS lists it. Throws hostError().
 * Each connection is checked again when it opens (lookup.ts).
 */
export async function checkBaseUrl(
  url: string,
  allowedHosts: string,
  resolve?: ResolveHost,
): Promise<void> {
  try {
    await checkSourceHost(url, allowedHosts, resolve)
  } catch (err) {
    throw hostError(err as SourceHostError)
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

// OLLAMA_URL may carry a credential for an Ollama behind a proxy: user info
// (`http://user:pass@host`) goes out as `Authorization: Basic`, a query (`?token=…`) on every
// request. Both services and the start command call Ollama through this one reading of it.

export type OllamaTarget = {
  /** `scheme://host:port`, what a connection pool is opened to. */
  origin: string
  /** The path prefix, without a trailing slash (`''` or `/ollama`). */
  basePath: string
  /** The query to append to every request path (`''` or `?token=…`). */
  query: string
  /** Headers every request carries (`authorization` when the URL has user info). */
  headers: Record<string, string>
  /** The credential's parts as they may come back quoted in an answer: hidden by `scrub`. */
  secrets: string[]
}

/** URL keeps user info percent-encoded; the header carries it decoded (`%zz` stays as written). */
function decoded(part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    return part
  }
}

// A query value shorter than this (`?v=1`) is no secret, and hiding it would garble every text.
const MIN_SECRET = 4

export function ollamaTarget(url: string): OllamaTarget {
  const parsed = new URL(url)
  const headers: Record<string, string> = {}
  const secrets: string[] = []
  if (parsed.username !== '' || parsed.password !== '') {
    const pair = `${decoded(parsed.username)}:${decoded(parsed.password)}`
    const basic = Buffer.from(pair).toString('base64')
    headers.authorization = `Basic ${basic}`
    secrets.push(basic, parsed.password, decoded(parsed.password))
  }
  for (const raw of parsed.search.slice(1).split('&')) {
    const value = raw.slice(raw.indexOf('=') + 1)
    secrets.push(value, decoded(value.replaceAll('+', ' ')))
  }
  return {
    origin: parsed.origin,
    basePath: parsed.pathname.replace(/\/+$/, ''),
    query: parsed.search,
    headers,
    // Longest first, so a secret that contains another is hidden whole.
    secrets: [...new Set(secrets.filter((s) => s.length >= MIN_SECRET))].sort(
      (a, b) => b.length - a.length,
    ),
  }
}

/**
 * Text from Ollama or a proxy in front of it (an error message, a page that echoes the request)
 * with every part of OLLAMA_URL's credential hidden, so it can reach a client or a log.
 */
export function scrub(target: Pick<OllamaTarget, 'secrets'>, text: string): string {
  let out = text
  for (const secret of target.secrets) out = out.split(secret).join('***')
  return out
}

/** The full URL of an Ollama endpoint (`/api/version`), with the query; no credentials in it. */
export const ollamaEndpoint = (target: OllamaTarget, path: string): string =>
  `${target.origin}${target.basePath}${path}${target.query}`

/**
 * A model's default parameters as given on the command line or in a query string: a JSON
 * object (`{"temperature":0.2}`), or undefined when the text is not one; each caller names the
 * problem in its own terms.
 */
export function modelParameters(text: string): Record<string, unknown> | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return undefined
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined
  return parsed as Record<string, unknown>
}

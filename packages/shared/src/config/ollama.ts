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
}

/** URL keeps user info percent-encoded; the header carries it decoded (`%zz` stays as written). */
function decoded(part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    return part
  }
}

export function ollamaTarget(url: string): OllamaTarget {
  const parsed = new URL(url)
  const headers: Record<string, string> = {}
  if (parsed.username !== '' || parsed.password !== '') {
    const pair = `${decoded(parsed.username)}:${decoded(parsed.password)}`
    headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`
  }
  return {
    origin: parsed.origin,
    basePath: parsed.pathname.replace(/\/+$/, ''),
    query: parsed.search,
    headers,
  }
}

/** The full URL of an Ollama endpoint (`/api/version`), with the query; no credentials in it. */
export const ollamaEndpoint = (target: OllamaTarget, path: string): string =>
  `${target.origin}${target.basePath}${path}${target.query}`

import { type FastifyReply, type FastifyRequest, LogController } from 'fastify'

/** Query parameters whose values are credentials by their names (`?api_key=…`, `?token=…`). */
const SECRET_PARAM = /key|token|secret|password|passwd|auth|credential|session/i

/**
 * The request's path and query with credential-looking query values hidden: a client that
 * offers only a URL field (some MCP clients) may put its key there, and a refused request is
 * logged like any other.
 */
export function loggableUrl(url: string): string {
  const q = url.indexOf('?')
  if (q === -1) return url
  const query = url
    .slice(q + 1)
    .split('&')
    .map((part) => {
      const eq = part.indexOf('=')
      const name = eq === -1 ? part : part.slice(0, eq)
      return eq !== -1 && SECRET_PARAM.test(decodeURIComponentSafe(name)) ? `${name}=***` : part
    })
    .join('&')
  return `${url.slice(0, q)}?${query}`
}

/** A query name as text; one that is not valid %-encoding is read as written. */
function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/**
 * One log line per request, written when it completes (Fastify's default is two: one on arrival,
 * one on completion). Request logging was two thirds of the gateway's cost over a bare proxy
 * (bench/gateway), so the arrival line is dropped and the completion line says it all.
 */
export class OneLineRequestLog extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    const line = {
      method: request.method,
      url: loggableUrl(request.url),
      statusCode: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 100) / 100,
    }
    if (error) reply.log.error({ ...line, err: error }, 'request errored')
    else reply.log.info(line, 'request completed')
  }
}

import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { workerRegistry } from './metrics.ts'

export type Readiness = () => Promise<{ ready: boolean; detail: Record<string, unknown> }>

const digest = (text: string) => createHash('sha256').update(text).digest()

/**
 * Whether a scrape may read /metrics: anyone when no METRICS_TOKEN is set (the endpoint listens
 * on WORKER_HEALTH_HOST, loopback unless the operator opens it), else the token as Bearer.
 */
function scrapeAllowed(token: string, authorization: string | undefined): boolean {
  if (token === '') return true
  const presented = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '')?.[1]
  return presented !== undefined && timingSafeEqual(digest(presented), digest(token))
}

/**
 * The worker's probe endpoint for Kubernetes: /health/live and /health/ready, and Prometheus'
 * /metrics (behind METRICS_TOKEN when it is set).
 */
export async function startHealthServer(
  host: string,
  port: number,
  readiness: Readiness,
  metricsToken = '',
): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' })
      res.end(JSON.stringify(body))
    }
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return send(405, { error: 'method_not_allowed' })
    if (req.url === '/health/live') return send(200, { status: 'ok' })
    if (req.url === '/health/ready') {
      readiness().then(
        ({ ready, detail }) =>
          send(ready ? 200 : 503, { status: ready ? 'ok' : 'down', ...detail }),
        (err: Error) => send(503, { status: 'down', error: err.message }),
      )
      return
    }
    if (req.url === '/metrics') {
      if (!scrapeAllowed(metricsToken, req.headers.authorization)) {
        res.setHeader('www-authenticate', 'Bearer realm="confluence-bot-worker"')
        return send(401, { error: 'unauthorized', message: 'Send METRICS_TOKEN as Bearer' })
      }
      workerRegistry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': workerRegistry.contentType })
        res.end(text)
      })
      return
    }
    send(404, { error: 'not_found' })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

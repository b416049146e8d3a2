import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export type Readiness = () => Promise<{ ready: boolean; detail: Record<string, unknown> }>

/** The worker's probe endpoint for Kubernetes: /health/live and /health/ready. */
export async function startHealthServer(
  host: string,
  port: number,
  readiness: Readiness,
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

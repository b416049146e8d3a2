import {
  createServer,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { Pool } from 'undici'

// The floor for any Node gateway in front of Ollama: node:http + one undici Pool, no framework.
// It reads the request body, forwards it (same method, path and content type), and pipes the
// answer back (status, content type and length when the upstream gave one) as bytes arrive, so
// streams are not buffered. Like the real gateway it uses a keep-alive pool of 128 connections
// with no headers/body timeout, and cancels the upstream request when the client goes away.

export type MinimalProxy = { url: string; server: Server; close(): Promise<void> }

/** The request body, read with events (cheaper than `for await`, and what Fastify does). */
function readBody(req: IncomingMessage): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.once('end', () => {
      if (chunks.length === 0) resolve(null)
      else resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks))
    })
    req.once('error', reject)
  })
}

export async function startMinimalProxy(upstreamUrl: string): Promise<MinimalProxy> {
  const pool = new Pool(upstreamUrl, { connections: 128, headersTimeout: 0, bodyTimeout: 0 })

  async function forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req)
    const abort = new AbortController()
    res.once('close', () => {
      if (!res.writableFinished) abort.abort()
    })
    const upstream = await pool.request({
      method: req.method === 'GET' ? 'GET' : 'POST',
      path: req.url ?? '/',
      headers: { 'content-type': req.headers['content-type'] ?? 'application/json' },
      body,
      signal: abort.signal,
    })
    const headers: OutgoingHttpHeaders = {}
    const type = upstream.headers['content-type']
    const length = upstream.headers['content-length']
    if (typeof type === 'string') headers['content-type'] = type
    if (typeof length === 'string') headers['content-length'] = length
    res.writeHead(upstream.statusCode, headers)
    // pipe() writes each chunk as it arrives (no buffering); an upstream failure mid-body cuts
    // the client's connection, so a truncated answer is never mistaken for a complete one.
    upstream.body.once('error', () => res.destroy())
    upstream.body.pipe(res)
  }

  const server = createServer((req, res) => {
    forward(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy()
        return
      }
      const body = JSON.stringify({ error: 'proxy_error', message: (err as Error).message })
      res.writeHead(502, { 'content-type': 'application/json' }).end(body)
    })
  })
  server.requestTimeout = 0
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      await closed
      await pool.close()
    },
  }
}

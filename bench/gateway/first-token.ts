import { Client } from 'undici'

// Time to first streamed token, one request at a time (concurrency 1, as an interactive user
// sees it). The clock starts just before the request is written and stops on the first body
// chunk that completes a token line (`{"response":…,"done":false}`); the rest of the body is
// read so the keep-alive connection is reused by the next request.

export const STREAM_BODY = JSON.stringify({ model: 'llama3.2', prompt: 'hi', stream: true })

export type FirstTokenProbe = {
  /** Milliseconds from request start to the first complete token line. */
  once(): Promise<number>
  close(): Promise<void>
}

function hasTokenLine(text: string): boolean {
  let start = 0
  for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
    const line = text.slice(start, nl)
    start = nl + 1
    try {
      const parsed = JSON.parse(line) as { response?: unknown; done?: unknown }
      if (parsed.done === false && typeof parsed.response === 'string') return true
    } catch {
      // not a JSON line: keep looking
    }
  }
  return false
}

export function firstTokenProbe(url: string): FirstTokenProbe {
  const client = new Client(url, { pipelining: 1 })
  return {
    async once() {
      const started = performance.now()
      const { statusCode, body } = await client.request({
        method: 'POST',
        path: '/api/generate',
        headers: { 'content-type': 'application/json' },
        body: STREAM_BODY,
      })
      let elapsed = -1
      let text = ''
      for await (const chunk of body) {
        if (elapsed >= 0) continue
        text += (chunk as Buffer).toString('utf8')
        if (hasTokenLine(text)) elapsed = performance.now() - started
      }
      if (statusCode !== 200 || elapsed < 0) {
        throw new Error(
          `${url}: streamed generate gave ${statusCode} without a token line: ${text}`,
        )
      }
      return elapsed
    },
    close: () => client.close(),
  }
}

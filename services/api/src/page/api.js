// The page's calls to the api: same origin, the key as a Bearer header (never in a URL, never
// in localStorage), errors as the api words them.

const KEY = 'confluence-bot.key'

/** The key for this browser session (sessionStorage: gone when the tab is closed). */
export const key = {
  get: () => sessionStorage.getItem(KEY) ?? '',
  set: (value) => sessionStorage.setItem(KEY, value),
  forget: () => sessionStorage.removeItem(KEY),
}

/** An answer the api refused: its status and its own message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message)
    this.status = status
  }
}

function headers(json) {
  const h = {}
  const k = key.get()
  if (k !== '') h.authorization = `Bearer ${k}`
  if (json) h['content-type'] = 'application/json'
  return h
}

async function refusal(res) {
  let message = `The server answered ${res.status}`
  try {
    const body = await res.json()
    if (typeof body.message === 'string') message = body.message
  } catch {
    // not JSON (a proxy's page): the status says it
  }
  return new ApiError(res.status, message)
}

/** A request whose answer is JSON (or nothing, 204). */
export async function call(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  if (!res.ok) throw await refusal(res)
  return res.status === 204 ? null : res.json()
}

/**
 * POST /api/chat with `stream:true`: `onLine` gets each NDJSON object as it arrives. Resolves
 * when the stream ends; rejects with an AbortError when `signal` stops it.
 */
export async function chatStream(body, signal, onLine) {
  const res = await fetch('/api/chat', {
    method: 'POST',
    headers: headers(true),
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  })
  if (!res.ok) throw await refusal(res)
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffered = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    buffered += value
    let end = buffered.indexOf('\n')
    while (end !== -1) {
      const line = buffered.slice(0, end).trim()
      buffered = buffered.slice(end + 1)
      if (line !== '') onLine(JSON.parse(line))
      end = buffered.indexOf('\n')
    }
  }
  if (buffered.trim() !== '') onLine(JSON.parse(buffered))
}

import t from 'tap'
import { bearer, listenTestApp, READER_KEY } from '../helpers/api.ts'
import { ndjson, standIn } from '../helpers/ollama.ts'
import { startRedis } from '../helpers/redis.ts'

// Chat continues a conversation stored in Redis: from another api process (a replica, or the
// same one restarted), within CONVERSATION_MAX_TURNS, and never one of another key.

const OTHER_KEY = 'another-reader-key-0123456789'
type Json = Record<string, unknown>
type Message = { role: string; content: string }

t.test('chat continues a conversation across api processes', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const ollama = await standIn(t)
  const env = {
    REDIS_URL: redis.url,
    OLLAMA_URL: ollama.url,
    API_KEYS: `${READER_KEY},${OTHER_KEY}`,
    RAG_ENABLED: 'false',
    CONVERSATION_MAX_TURNS: '4',
  }
  const first = await listenTestApp(t, env)
  const chat = async (url: string, body: Json, key = READER_KEY) => {
    const res = await fetch(`${url}/api/chat`, {
      method: 'POST',
      headers: { ...bearer(key), 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    return { status: res.status, text: await res.text() }
  }
  const conversation = async (url: string, id: string, key = READER_KEY) => {
    const res = await fetch(`${url}/api/conversations/${id}`, { headers: bearer(key) })
    return { status: res.status, json: (await res.json()) as { messages: Message[] } & Json }
  }
  /** The messages of the last chat request that reached the stand-in. */
  const lastPrompt = () => {
    const last = ollama.requests.filter((r) => r.path === '/api/chat').at(-1)
    return (last?.body as { messages: Message[] } | undefined)?.messages.map((m) => m.content)
  }

  const opened = await chat(first.url, {
    messages: [{ role: 'user', content: 'How do I deploy the agent?' }],
  })
  t.equal(opened.status, 200, opened.text)
  const id = (JSON.parse(opened.text) as Json).conversation_id as string
  t.match(id, /^conv_[A-Za-z0-9_-]{22}$/)
  const answer = (JSON.parse(opened.text) as { choices: [{ message: Message }] }).choices[0].message
    .content
  t.match((await conversation(first.url, id)).json, {
    title: 'How do I deploy the agent?',
    messages: [
      { role: 'user', content: 'How do I deploy the agent?' },
      { role: 'assistant', content: answer },
    ],
  })

  await first.app.close()
  const second = await listenTestApp(t, env)

  t.test('another process answers the follow-up with the history before it', async (t) => {
    const res = await chat(second.url, {
      conversation_id: id,
      messages: [{ role: 'user', content: 'And on Data Center?' }],
    })
    t.equal(res.status, 200, res.text)
    t.equal((JSON.parse(res.text) as Json).conversation_id, id)
    t.same(lastPrompt(), ['How do I deploy the agent?', answer, 'And on Data Center?'])
    t.equal((await conversation(second.url, id)).json.messages.length, 4)
  })

  t.test('a streamed follow-up is stored once complete; the oldest turns go', async (t) => {
    const res = await chat(second.url, {
      conversation_id: id,
      messages: [{ role: 'user', content: 'And in Kubernetes?' }],
      stream: true,
    })
    t.equal(res.status, 200)
    t.match(ndjson(res.text)[0], { conversation_id: id })
    // The conversation is saved after the last line is sent.
    let messages: Message[] = []
    for (let i = 0; i < 100; i++) {
      messages = (await conversation(second.url, id)).json.messages
      if (messages.some((m) => m.content === 'And in Kubernetes?')) break
      await new Promise((r) => setTimeout(r, 50))
    }
    t.same(
      messages.map((m) => m.role),
      ['user', 'assistant', 'user', 'assistant'],
      'CONVERSATION_MAX_TURNS messages',
    )
    t.equal(messages[0]?.content, 'And on Data Center?', 'the first exchange is gone')
    t.equal(messages[2]?.content, 'And in Kubernetes?')
    t.equal(
      (await conversation(second.url, id)).json.title,
      'How do I deploy the agent?',
      'the title stays',
    )
  })

  t.test('a conversation deleted while its answer streams stays deleted', async (t) => {
    const opened = await chat(second.url, { messages: [{ role: 'user', content: 'Soon gone?' }] })
    const gone = (JSON.parse(opened.text) as Json).conversation_id as string
    ollama.options.tokenDelayMs = 100
    t.teardown(() => {
      ollama.options.tokenDelayMs = 0
    })
    const res = await fetch(`${second.url}/api/chat`, {
      method: 'POST',
      headers: { ...bearer(READER_KEY), 'content-type': 'application/json' },
      body: JSON.stringify({
        conversation_id: gone,
        messages: [{ role: 'user', content: 'And now?' }],
        stream: true,
      }),
    })
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    await reader.read()
    // Deleted by its owner (from another tab) while the answer is still coming.
    const deleted = await fetch(`${second.url}/api/conversations/${gone}`, {
      method: 'DELETE',
      headers: bearer(READER_KEY),
    })
    t.equal(deleted.status, 204)
    let rest = ''
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      rest += Buffer.from(value).toString()
    }
    t.match(ndjson(rest).at(-1), { done: true }, 'the answer itself is complete')
    await new Promise((r) => setTimeout(r, 200))
    t.equal((await conversation(second.url, gone)).status, 404, 'not brought back by the save')
    const listed = await fetch(`${second.url}/api/conversations`, { headers: bearer(READER_KEY) })
    const ids = ((await listed.json()) as { conversations: Json[] }).conversations.map((c) => c.id)
    t.notOk(ids.includes(gone))
  })

  t.test('another key can neither read nor continue it', async (t) => {
    const before = ollama.requests.length
    const res = await chat(
      second.url,
      { conversation_id: id, messages: [{ role: 'user', content: 'what did they ask?' }] },
      OTHER_KEY,
    )
    t.equal(res.status, 404)
    t.match(JSON.parse(res.text), { error: 'conversation_not_found' })
    t.equal(ollama.requests.length, before, 'nothing reached the model')
    t.equal((await conversation(second.url, id, OTHER_KEY)).status, 404)
  })

  t.test('a malformed conversation_id is a 400', async (t) => {
    const res = await chat(second.url, {
      conversation_id: '../../other',
      messages: [{ role: 'user', content: 'x' }],
    })
    t.equal(res.status, 400)
    t.match(JSON.parse(res.text), { error: 'validation_failed', message: /conversation_id/ })
  })
})

import { Ollama } from 'ollama'
import t from 'tap'
import { READER_KEY } from '../../helpers/api.ts'
import { ENG_KEY, groundedRig, type Json, post } from '../../helpers/grounded.ts'

// Grounded answers through /ollama as the official `ollama` npm client gets them, over a real
// socket: an index a real worker built, the Ollama stand-in as the model. The stand-in cites
// the first excerpt whenever it was given excerpts, so a grounded answer says [1].

const ALIAS = 'llama3.2+confluence'
const QUESTION = 'How do I roll back the billing deployment?'
const ANSWER = ['Run ', '`helm rollback billing` ', 'with the previous revision [1].']
const HONEST = 'The indexed Confluence spaces hold nothing on this question.'

type Body = Record<string, unknown>

/** What a promise rejects with (or `{}` if it resolves). */
const failure = (promise: Promise<unknown>): Promise<Json> =>
  promise.then(
    () => ({}),
    (e: unknown) => e as Json,
  )
type Turn = { role: string; content: string }
const messagesOf = (body: Body) => (body.messages ?? []) as Turn[]

function respond(body: Body): string[] | undefined {
  // A follow-up is first rewritten into a standalone query: the question itself, here.
  if (/standalone search query/.test(messagesOf(body)[0]?.content ?? '')) return [QUESTION]
  const last = messagesOf(body).at(-1)?.content ?? ''
  return /<excerpt-[0-9a-f]+ n="1">/.test(last) ? ANSWER : undefined
}

t.test('grounded answers under an alias, through the ollama client', async (t) => {
  const { url, rig } = await groundedRig(t)
  rig.ollama.options.respond = respond
  const client = (key = READER_KEY) =>
    new Ollama({ host: `${url}/ollama`, headers: { Authorization: `Bearer ${key}` } })
  const ollama = client()
  const calls = (path = '/api/chat') => rig.ollama.requests.filter((r) => r.path === path)
  const lastChat = () => calls().at(-1)?.body as Body

  t.test('chat, not streamed: cited, a Sources list, sources, the alias', async (t) => {
    const before = calls().length
    const res = await ollama.chat({
      model: ALIAS,
      messages: [{ role: 'user', content: QUESTION }],
      options: { temperature: 0.1 },
    })
    t.equal(res.model, ALIAS)
    t.equal(res.done, true)
    t.equal(res.message.role, 'assistant')
    const [text, list] = res.message.content.split('\n\nSources:\n') as [string, string]
    t.equal(text, ANSWER.join(''), 'the citation stays in the text')
    t.match(list, /^- \[1\] Deploying the billing service: \S*101/)
    t.notMatch(list, /\[2\]/, 'only cited excerpts are listed')
    const sources = (res as unknown as Json).sources as Json[]
    t.ok(sources.length >= 1)
    t.match(sources[0], { n: 1, title: 'Deploying the billing service', space: 'ENG', cited: true })
    t.ok(list.includes(sources[0]?.url), 'the list names the URL of the source')
    const sent = calls().slice(before)
    t.equal(sent.length, 1, 'one call to the model')
    const body = sent[0]?.body as Body
    t.equal(body.model, 'llama3.2', 'the base model answers')
    t.equal(body.stream, false)
    t.match(messagesOf(body)[0], { role: 'system', content: /never as instructions/ })
    t.match(messagesOf(body).at(-1)?.content, /Title: Deploying the billing service/)
    t.match(body.options, { temperature: 0.1, num_ctx: Number })
  })

  t.test('chat, streamed: every line under the alias, Sources before done', async (t) => {
    const stream = await ollama.chat({
      model: ALIAS,
      messages: [{ role: 'user', content: QUESTION }],
      stream: true,
    })
    const parts: Json[] = []
    for await (const part of stream) parts.push(part as unknown as Json)
    for (const part of parts) t.equal(part.model, ALIAS)
    const tokens = parts.slice(0, -1).map((part) => part.message.content as string)
    t.same(tokens.slice(0, 3), ANSWER, 'the model’s tokens as they came')
    t.match(tokens[3], /^\n\nSources:\n- \[1\] Deploying the billing service: /)
    t.equal(tokens.length, 4, 'the Sources list is the last token')
    const done = parts.at(-1) as Json
    t.match(done, { done: true, done_reason: 'stop', eval_count: Number })
    t.match(done.sources[0], { n: 1, cited: true })
    t.equal(lastChat().stream, true)
  })

  t.test('generate, not streamed and streamed: response tokens, grounded', async (t) => {
    const before = calls('/api/generate').length
    const res = await ollama.generate({ model: ALIAS, prompt: QUESTION, system: 'Be brief.' })
    t.equal(res.model, ALIAS)
    t.match(
      res.response,
      /^Run `helm rollback billing` with the previous revision \[1\]\.\n\nSources:\n- \[1\] Deploying/,
    )
    t.match((res as unknown as Json).sources[0], { n: 1, cited: true })
    const sent = lastChat()
    t.same(
      messagesOf(sent).map((m) => m.role),
      ['system', 'system', 'user'],
      'the instructions, the client’s system prompt, the question: a one-turn chat',
    )
    t.equal(messagesOf(sent)[1]?.content, 'Be brief.')
    t.equal(calls('/api/generate').length, before, 'Ollama’s generate is not used')

    const stream = await ollama.generate({ model: ALIAS, prompt: QUESTION, stream: true })
    const parts: Json[] = []
    for await (const part of stream) parts.push(part as unknown as Json)
    for (const part of parts) t.equal(part.model, ALIAS)
    const text = parts.map((part) => part.response).join('')
    t.match(text, /revision \[1\]\.\n\nSources:\n- \[1\] Deploying the billing service/)
    t.notOk('message' in (parts[0] as Json), 'generate lines, not chat lines')
    t.match(parts.at(-1), { done: true, response: '', sources: [{ n: 1, cited: true }] })
    t.equal(messagesOf(lastChat()).length, 2, 'no system prompt asked: instructions, question')
  })

  t.test('a thinking model: its thinking as generate writes it, then the answer', async (t) => {
    const models = rig.ollama.options.models
    const llama = models[0] as (typeof models)[number]
    rig.ollama.options.models = [
      ...models,
      { ...llama, name: 'qwen3:latest', capabilities: ['completion', 'thinking'] },
    ]
    rig.ollama.options.splitWrites = true
    t.teardown(() => {
      rig.ollama.options.models = models
      rig.ollama.options.splitWrites = false
    })
    const stream = await ollama.generate({
      model: 'qwen3+confluence',
      prompt: QUESTION,
      think: true,
      stream: true,
    })
    const parts: Json[] = []
    for await (const part of stream) parts.push(part as unknown as Json)
    t.equal(parts.map((part) => part.thinking ?? '').join(''), 'Rayleigh scattering?')
    t.match(parts.map((part) => part.response).join(''), /^Run .*\[1\]\.\n\nSources:\n- \[1\] /)
    t.ok(parts.every((part) => part.model === 'qwen3+confluence'))
    t.match(lastChat(), { model: 'qwen3', think: true }, 'think reaches the model')
  })

  t.test('a conversation with a tool-call turn (no content) is grounded too', async (t) => {
    const call = { function: { name: 'get_weather', arguments: { city: 'Paris' } } }
    const messages = [
      { role: 'user', content: 'What is the weather in Paris?' },
      { role: 'assistant', tool_calls: [call] },
      { role: 'tool', content: '11 degrees', tool_name: 'get_weather' },
      { role: 'user', content: QUESTION },
    ]
    const res = await post(`${url}/ollama/api/chat`, READER_KEY, {
      model: ALIAS,
      messages,
      stream: false,
    })
    t.equal(res.status, 200, res.text)
    t.match(res.json, { model: ALIAS, message: { content: /\[1\]\.\n\nSources:/ } })
    const sent = messagesOf(lastChat()) as Json[]
    t.match(
      sent.at(-3),
      { role: 'assistant', content: '', tool_calls: [call] },
      'kept, with text ""',
    )
    t.match(sent.at(-1)?.content, /Title: Deploying the billing service/)
  })

  t.test('a key limited to ENG never gets OPS excerpts or sources', async (t) => {
    const eng = client(ENG_KEY)
    const opsgenie = [{ role: 'user', content: 'Who is paged on-call through Opsgenie?' }]
    const all = await ollama.chat({ model: ALIAS, messages: opsgenie })
    const spaces = ((all as unknown as Json).sources as Json[]).map((source) => source.space)
    t.ok(spaces.includes('OPS'), 'a reader of every space is answered from OPS')

    // Within ENG nothing is on the question: that is the answer, and the model is not asked.
    const before = calls().length
    const res = await eng.chat({ model: ALIAS, messages: opsgenie })
    t.equal(res.model, ALIAS)
    t.equal(res.message.content, HONEST)
    t.same((res as unknown as Json).sources, [])
    const streamed = await eng.generate({
      model: ALIAS,
      prompt: 'Opsgenie on-call rotation',
      stream: true,
      options: { rag_spaces: ' OPS , ' } as Json,
    })
    const parts: Json[] = []
    for await (const part of streamed) parts.push(part as unknown as Json)
    t.same(
      parts.map((part) => part.response),
      [HONEST, ''],
      'asking for OPS outright finds nothing either',
    )
    t.match(parts.at(-1), { model: ALIAS, done: true, done_reason: 'stop', sources: [] })
    t.equal(calls().length, before, 'the model was not asked')

    const rollback = await eng.chat({
      model: ALIAS,
      messages: [{ role: 'user', content: QUESTION }],
    })
    const sources = (rollback as unknown as Json).sources as Json[]
    t.ok(sources.length > 0, 'answered from ENG')
    for (const source of sources) t.equal(source.space, 'ENG')
    for (const call of calls().slice(before)) {
      t.notMatch(JSON.stringify(call.body), /Opsgenie|On-call rotation|SEV1/, 'no OPS text')
    }
  })

  t.test('options.rag_spaces and rag_top_k narrow the search and stay here', async (t) => {
    const res = await ollama.chat({
      model: ALIAS,
      messages: [{ role: 'user', content: 'Who is paged on-call through Opsgenie?' }],
      options: { rag_spaces: ['OPS'], rag_top_k: 1, seed: 7 } as Json,
    })
    const sources = (res as unknown as Json).sources as Json[]
    t.equal(sources.length, 1)
    t.equal(sources[0]?.space, 'OPS')
    const options = lastChat().options as Json
    t.equal(options.seed, 7, 'Ollama’s own options pass')
    t.notOk('rag_spaces' in options || 'rag_top_k' in options, 'rag_* never reach Ollama')
  })

  t.test('no question: the base model is loaded, as Ollama does', async (t) => {
    const chat = await ollama.chat({ model: ALIAS, messages: [] })
    t.match(chat, { model: ALIAS, done: true, done_reason: 'load' })
    const res = await fetch(`${url}/ollama/api/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${READER_KEY}` },
      body: JSON.stringify({ model: ALIAS }),
    })
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Json)
    const bare = await fetch(`${url}/ollama/api/chat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${READER_KEY}` },
      body: JSON.stringify({ model: ALIAS, stream: false }),
    })
    t.match(await bare.json(), { model: ALIAS, done_reason: 'load', sources: [] }, 'no messages')
    t.equal(res.headers.get('content-type'), 'application/x-ndjson', 'stream defaults to true')
    t.match(lines, [{ model: ALIAS, response: '', done: true, done_reason: 'load', sources: [] }])
  })

  t.test('format set: the answer stays the model’s JSON, sources only beside it', async (t) => {
    const json = ['{"answer": ', '"helm rollback billing [1]"}']
    rig.ollama.options.respond = (body) => (respond(body) === undefined ? undefined : json)
    t.teardown(() => {
      rig.ollama.options.respond = respond
    })
    const question = [{ role: 'user', content: QUESTION }]
    const res = await ollama.chat({ model: ALIAS, messages: question, format: 'json' })
    t.same(JSON.parse(res.message.content), { answer: 'helm rollback billing [1]' }, 'parses')
    t.match((res as unknown as Json).sources, [{ n: 1, cited: true }], 'cited, in sources')
    t.equal(lastChat().format, 'json', 'format reaches the model')

    const schema = { type: 'object', properties: { answer: { type: 'string' } } }
    const stream = await ollama.chat({
      model: ALIAS,
      messages: question,
      format: schema,
      stream: true,
    })
    const parts: Json[] = []
    for await (const part of stream) parts.push(part as unknown as Json)
    const text = parts.map((part) => part.message.content).join('')
    t.same(JSON.parse(text), { answer: 'helm rollback billing [1]' }, 'a schema: parses too')
    t.match(parts.at(-1), { done: true, sources: [{ n: 1, cited: true }] })
    t.same(lastChat().format, schema)

    const generated = await ollama.generate({ model: ALIAS, prompt: QUESTION, format: 'json' })
    t.same(JSON.parse(generated.response as string), { answer: 'helm rollback billing [1]' })
    // Ollama reads an empty or null format as none: the Sources list is then added as usual.
    for (const format of ['', null]) {
      const plain = await post(`${url}/ollama/api/chat`, READER_KEY, {
        model: ALIAS,
        messages: question,
        stream: false,
        format,
      })
      t.match(
        plain.json.message.content,
        /\}\n\nSources:\n- \[1\] /,
        `format ${JSON.stringify(format)}`,
      )
    }
  })

  t.test('the alias of an embedding-only model: Ollama’s 400, before any retrieval', async (t) => {
    const before = rig.ollama.requests.length
    const chat = await failure(
      ollama.chat({
        model: 'nomic-embed-text+confluence',
        messages: [{ role: 'user', content: QUESTION }],
      }),
    )
    t.match(chat, { status_code: 400, error: '"nomic-embed-text" does not support chat' })
    const generate = await failure(
      ollama.generate({
        model: 'nomic-embed-text:latest+confluence',
        prompt: QUESTION,
        stream: true,
      }),
    )
    t.match(generate, {
      status_code: 400,
      error: '"nomic-embed-text:latest" does not support generate',
    })
    const paths = rig.ollama.requests.slice(before).map((r) => r.path)
    t.notOk(paths.includes('/api/embed'), 'nothing embedded')
    t.notOk(paths.includes('/api/chat'), 'nothing asked')
  })

  t.test('a blank options.rag_spaces ("" or []) narrows nothing', async (t) => {
    const opsgenie = [{ role: 'user', content: 'Who is paged on-call through Opsgenie?' }]
    for (const rag_spaces of ['', ' , ', []]) {
      const res = await ollama.chat({
        model: ALIAS,
        messages: opsgenie,
        options: { rag_spaces } as Json,
      })
      const spaces = ((res as unknown as Json).sources as Json[]).map((source) => source.space)
      t.ok(spaces.includes('OPS'), `${JSON.stringify(rag_spaces)}: every space the key reads`)
    }
    // A key limited to ENG stays within ENG.
    const eng = await client(ENG_KEY).chat({
      model: ALIAS,
      messages: [{ role: 'user', content: QUESTION }],
      options: { rag_spaces: [] } as Json,
    })
    const sources = (eng as unknown as Json).sources as Json[]
    t.ok(sources.length > 0)
    for (const source of sources) t.equal(source.space, 'ENG')
  })

  t.test('generate: raw is refused, template/context/suffix are dropped', async (t) => {
    const before = rig.ollama.requests.length
    const raw = await failure(ollama.generate({ model: ALIAS, prompt: QUESTION, raw: true }))
    t.match(raw, { status_code: 400, error: /raw prompt cannot be grounded/ })
    t.equal(rig.ollama.requests.length, before, 'Ollama was not asked')
    const res = await ollama.generate({
      model: ALIAS,
      prompt: QUESTION,
      raw: false,
      template: '{{ .Prompt }}',
      context: [1, 2, 3],
      suffix: 'end',
    })
    t.match(res.response, /\[1\]/)
    const sent = lastChat()
    for (const field of ['raw', 'template', 'context', 'suffix']) t.notOk(field in sent, field)
  })

  t.test('an alias of a model Ollama lacks is a 404', async (t) => {
    const err: Json = await ollama
      .chat({ model: 'nope+confluence', messages: [{ role: 'user', content: QUESTION }] })
      .then(
        () => ({}),
        (e: unknown) => e as Json,
      )
    t.equal(err.name, 'ResponseError')
    t.equal(err.status_code, 404)
    t.match(err.error, /model 'nope' not found/)
  })

  t.test('a model that fails before answering: 502 in Ollama’s shape', async (t) => {
    rig.ollama.options.failBeforeOutput = { status: 500, error: 'out of memory' }
    t.teardown(() => {
      rig.ollama.options.failBeforeOutput = undefined
    })
    const err: Json = await ollama.generate({ model: ALIAS, prompt: QUESTION, stream: true }).then(
      () => ({}),
      (e: unknown) => e as Json,
    )
    t.match(err, { name: 'ResponseError', status_code: 502, error: 'Ollama failed: out of memory' })
  })

  t.test('a grounded stream cut upstream throws in the client', async (t) => {
    rig.ollama.options.truncateAfterTokens = 2
    t.teardown(() => {
      rig.ollama.options.truncateAfterTokens = undefined
    })
    const stream = await ollama.chat({
      model: ALIAS,
      messages: [{ role: 'user', content: QUESTION }],
      stream: true,
    })
    const parts: Json[] = []
    const failed = await (async () => {
      for await (const part of stream) parts.push(part as unknown as Json)
    })().catch((e: unknown) => e as Error)
    t.ok(failed instanceof Error, 'the stream fails')
    t.match((failed as Error).message, /stopped before it was complete/)
    t.equal(parts.length, 2, 'after the tokens that came')
    t.notOk(
      parts.some((part) => part.done),
      'no done: not a short answer',
    )
  })

  t.test('a client that goes away cancels the model', async (t) => {
    rig.ollama.options.tokenDelayMs = 200
    t.teardown(() => {
      rig.ollama.options.tokenDelayMs = 0
    })
    const stream = await ollama.generate({ model: ALIAS, prompt: QUESTION, stream: true })
    const stopped = await (async () => {
      for await (const part of stream) {
        t.equal(part.model, ALIAS)
        stream.abort()
      }
    })().catch((e: unknown) => e as Error)
    t.equal((stopped as Error).name, 'AbortError')
    const aborted = await rig.ollama.waitForAbort(10_000)
    t.equal(aborted.path, '/api/chat')
    t.equal((aborted.body as Body).model, 'llama3.2')
  })
})

import OpenAI from 'openai'
import t from 'tap'
import { buildTestApp, READER_KEY } from '../../helpers/api.ts'
import { ENG_KEY, GROUNDED_PAGES, groundedRig, type Json } from '../../helpers/grounded.ts'
import { rigApiEnv } from '../../helpers/ingest.ts'

// Grounded /v1/chat/completions through the official openai SDK over a real socket: an index a
// real worker built, the Ollama stand-in as the model. The stand-in cites the first excerpt it
// was given, so a grounded answer says [1].

type Body = Record<string, unknown>
const messagesOf = (body: Body) => (body.messages ?? []) as Array<{ role: string; content: string }>
const ANSWER = ['Run ', '`helm rollback billing` ', 'with the previous revision [1].']

function respond(body: Body): string[] | undefined {
  const last = messagesOf(body).at(-1)?.content ?? ''
  return /<excerpt-[0-9a-f]+ n="1">/.test(last) ? ANSWER : undefined
}

const question = { role: 'user' as const, content: 'How do I roll back the billing deployment?' }

t.test('grounded chat completions through the openai SDK', async (t) => {
  const { url, rig } = await groundedRig(t)
  const { ollama } = rig
  ollama.options.respond = respond
  const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: READER_KEY, maxRetries: 0 })
  const chatCalls = () => ollama.requests.filter((r) => r.path === '/api/chat')

  t.test('non-streamed: a cited answer, the sources and the retrieval', async (t) => {
    const before = chatCalls().length
    const res = await openai.chat.completions.create({
      model: 'llama3.2',
      messages: [question],
    })
    t.equal(res.object, 'chat.completion')
    t.equal(res.choices[0]?.message.content, ANSWER.join(''))
    t.equal(res.choices[0]?.finish_reason, 'stop')
    const extra = res as unknown as Json
    const sources = extra.sources as Json[]
    t.ok(sources.length >= 1)
    t.match(sources[0], {
      n: 1,
      title: 'Deploying the billing service',
      url: /101/,
      space: 'ENG',
      updated_at: '2024-06-10T08:00:00.000Z',
      score: Number,
      snippet: String,
      cited: true,
    })
    sources.forEach((source, i) => {
      t.equal(source.n, i + 1)
      t.equal(source.cited, i === 0, `only [1] is cited (source ${i + 1})`)
    })
    t.match(extra.retrieval, { query: question.content, rewritten: false, mode: 'hybrid' })
    t.equal(extra.grounded, true)
    t.notOk('grounding_note' in extra)
    const sent = chatCalls().slice(before)
    t.equal(sent.length, 1)
    const prompt = messagesOf(sent[0]?.body as Body)
    t.equal(prompt[0]?.role, 'system')
    t.match(prompt.at(-1)?.content, /helm rollback billing/, 'the excerpts reach the model')
  })

  t.test(
    'streamed: role first with the sources, tokens as deltas, finish, usage, [DONE]',
    async (t) => {
      const stream = await openai.chat.completions.create({
        model: 'llama3.2',
        messages: [question],
        stream: true,
        stream_options: { include_usage: true },
      })
      const chunks: Json[] = []
      for await (const chunk of stream) chunks.push(chunk as unknown as Json)
      const [first, ...rest] = chunks
      t.match(first, {
        object: 'chat.completion.chunk',
        choices: [{ index: 0, delta: { role: 'assistant' }, finish_reason: null }],
        retrieval: { mode: 'hybrid' },
      })
      t.equal(first?.sources[0].title, 'Deploying the billing service')
      t.equal(first?.sources[0].cited, false, 'not known before the answer')
      const deltas = rest.filter((c) => c.choices[0]?.delta.content !== undefined)
      t.same(
        deltas.map((c) => c.choices[0].delta.content),
        ANSWER,
        'each token its own delta',
      )
      const finish = rest.find((c) => c.choices[0]?.finish_reason !== null && c.choices.length > 0)
      t.match(finish, { choices: [{ delta: {}, finish_reason: 'stop' }], cited: [1] })
      const usage = chunks.at(-1)
      t.same(usage?.choices, [], 'the usage chunk has no choices')
      t.match(usage?.usage, { prompt_tokens: Number, completion_tokens: 3, total_tokens: Number })
      t.ok(
        chunks.every((c) => c.id === first?.id && c.created === first?.created),
        'one id',
      )

      // On the wire: text/event-stream, data lines only, [DONE] last.
      const raw = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${READER_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'llama3.2', messages: [question], stream: true }),
      })
      t.match(raw.headers.get('content-type'), /^text\/event-stream/)
      t.equal(raw.headers.get('cache-control'), 'no-cache')
      const text = await raw.text()
      t.ok(text.endsWith('data: [DONE]\n\n'), 'complete: [DONE] last')
      const events = text.split('\n\n').filter((e) => e !== '')
      t.ok(
        events.every((e) => e.startsWith('data: ')),
        'data events only',
      )
      const parsed = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)) as Json)
      t.notOk(
        parsed.some((c) => 'usage' in c),
        'no usage chunk without stream_options.include_usage',
      )
    },
  )

  t.test('a client that aborts mid-stream aborts the request to Ollama', async (t) => {
    const saved = { ...ollama.options }
    ollama.options.respond = undefined
    ollama.options.tokens = Array(50).fill(' x')
    ollama.options.tokenDelayMs = 100
    t.teardown(() => {
      Object.assign(ollama.options, saved)
    })
    const controller = new AbortController()
    const aborted = ollama.waitForAbort(10_000)
    const stream = await openai.chat.completions.create(
      { model: 'llama3.2', messages: [question], stream: true },
      { signal: controller.signal },
    )
    let got = 0
    const reading = (async () => {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) {
          got++
          controller.abort()
        }
      }
    })()
    await reading.catch(() => undefined)
    t.equal(got, 1, 'a token arrived while the answer was still being written')
    const seen = await aborted
    t.equal(seen.path, '/api/chat', 'Ollama saw its client go')
  })

  t.test('a stream cut upstream makes the SDK throw, never end quietly', async (t) => {
    for (const [name, knobs] of [
      ['truncated', { truncateAfterTokens: 2 }],
      ['truncated by a reset', { truncateAfterTokens: 2, truncateMode: 'destroy' as const }],
      [
        'an Ollama error mid-stream',
        { failAfterTokens: { count: 2, error: 'CUDA out of memory' } },
      ],
    ] as const) {
      Object.assign(ollama.options, knobs)
      const received: string[] = []
      const failure = await (async () => {
        const stream = await openai.chat.completions.create({
          model: 'llama3.2',
          messages: [question],
          stream: true,
          stream_options: { include_usage: true },
        })
        for await (const chunk of stream) {
          const text = chunk.choices[0]?.delta.content
          if (text) received.push(text)
        }
      })().catch((e: unknown) => e)
      ollama.options.truncateAfterTokens = undefined
      ollama.options.truncateMode = undefined
      ollama.options.failAfterTokens = undefined
      t.ok(failure instanceof OpenAI.APIError, `${name}: ${String(failure)}`)
      t.same(received, ANSWER.slice(0, 2), `${name}: the tokens before the cut arrived`)
      const message = (failure as Error).message
      if (name === 'an Ollama error mid-stream') t.match(message, /CUDA out of memory/)
      else t.match(message, /stopped before it was complete/)
      t.match((failure as InstanceType<typeof OpenAI.APIError>).error, {
        type: 'server_error',
      })
    }

    // On the wire: the error is the last event, and no [DONE] claims the answer complete.
    ollama.options.truncateAfterTokens = 2
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${READER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'llama3.2', messages: [question], stream: true }),
    })
    const text = await res.text()
    ollama.options.truncateAfterTokens = undefined
    t.equal(res.status, 200, 'the stream had begun')
    t.notMatch(text, /\[DONE\]/)
    const events = text.split('\n\n').filter((e) => e !== '')
    const last = JSON.parse((events.at(-1) as string).slice('data: '.length)) as Json
    t.match(last, {
      error: {
        message: /stopped before it was complete/,
        type: 'server_error',
        param: null,
        code: 'ollama_stream_interrupted',
      },
    })
    t.notOk(
      events.some((e) => e.includes('"finish_reason":"stop"')),
      'no finish chunk for a cut answer',
    )
  })

  t.test('a model Ollama does not have: NotFoundError', async (t) => {
    const err = await openai.chat.completions
      .create({ model: 'no-such-model', messages: [question] })
      .catch((e: unknown) => e)
    t.ok(err instanceof OpenAI.NotFoundError, String(err))
    t.equal((err as InstanceType<typeof OpenAI.NotFoundError>).code, 'model_not_found')
  })

  t.test('a reader limited to ENG never gets OPS sources', async (t) => {
    const eng = new OpenAI({ baseURL: `${url}/v1`, apiKey: ENG_KEY, maxRetries: 0 })
    const onCall = {
      role: 'user' as const,
      content: 'Who is paged through Opsgenie on call when a billing rollback fails?',
    }
    const reader = (await openai.chat.completions.create({
      model: 'llama3.2',
      messages: [onCall],
    })) as unknown as Json
    t.ok(
      (reader.sources as Json[]).some((s) => s.space === 'OPS'),
      'a reader of every space gets the OPS page',
    )
    const from = chatCalls().length
    const asked = [onCall, question].flatMap((q) =>
      [undefined, { spaces: ['OPS'] }, { spaces: ['ops', 'ENG'] }].map((rag) => ({ q, rag })),
    )
    for (const { q, rag } of asked) {
      const res = (await eng.chat.completions.create({
        model: 'llama3.2',
        messages: [q],
        // @ts-expect-error the extra body field, as the SDK sends it
        rag,
      })) as unknown as Json
      t.notOk(
        (res.sources as Json[]).some((s) => s.space !== 'ENG'),
        `ENG only (${q.content}, rag ${JSON.stringify(rag)})`,
      )
    }
    const stream = await eng.chat.completions.create({
      model: 'llama3.2',
      messages: [question],
      stream: true,
    })
    for await (const chunk of stream) {
      const sources = (chunk as unknown as Json).sources as Json[] | undefined
      if (sources)
        t.notOk(
          sources.some((s) => s.space !== 'ENG'),
          'streamed: ENG only',
        )
    }
    const opsTitles = GROUNDED_PAGES.filter((p) => p.spaceKey === 'OPS').map((p) => p.title)
    const prompts = chatCalls()
      .slice(from)
      .map((r) => JSON.stringify(r.body))
    t.ok(prompts.length > 0, 'ENG excerpts were given to the model')
    t.notOk(
      prompts.some((prompt) => opsTitles.some((title) => prompt.includes(title))),
      'no OPS excerpt reached the model',
    )
  })

  t.test('rag.enabled:false: the model alone, no sources', async (t) => {
    const res = (await openai.chat.completions.create({
      model: 'llama3.2',
      messages: [question],
      // @ts-expect-error the extra body field
      rag: { enabled: false },
    })) as unknown as Json
    t.equal(res.choices[0].message.content, 'The sky is blue.')
    t.same(res.sources, [])
    t.equal(res.retrieval, undefined)
    t.equal(res.grounded, false)
    t.match(res.grounding_note, /Grounding is off \(rag\.enabled:false/)
    const sent = chatCalls().at(-1)?.body as Body
    t.same(messagesOf(sent), [question], 'the question as asked, no excerpts')
  })

  t.test('the last turn not the user’s: answered alone, and the answer says so', async (t) => {
    const conversations = [
      [{ role: 'system' as const, content: 'You are terse.' }],
      [question, { role: 'assistant' as const, content: 'Run helm' }],
    ]
    for (const messages of conversations) {
      const before = chatCalls().length
      const res = (await openai.chat.completions.create({
        model: 'llama3.2',
        messages,
      })) as unknown as Json
      t.equal(res.grounded, false, `last turn: ${messages.at(-1)?.role}`)
      t.match(res.grounding_note, /last message is not the user's/)
      t.equal(res.retrieval, undefined)
      t.same(res.sources, [])
      const sent = chatCalls().slice(before)
      t.equal(sent.length, 1, 'no retrieval call, only the answer')
      t.same(messagesOf(sent[0]?.body as Body), messages, 'the conversation as sent')

      const stream = await openai.chat.completions.create({
        model: 'llama3.2',
        messages,
        stream: true,
      })
      const chunks: Json[] = []
      for await (const chunk of stream) chunks.push(chunk as unknown as Json)
      t.match(chunks[0], { grounded: false, grounding_note: /last message is not the user's/ })
    }
    const stream = await openai.chat.completions.create({
      model: 'llama3.2:latest+confluence',
      messages: [question],
      stream: true,
    })
    const chunks: Json[] = []
    for await (const chunk of stream) chunks.push(chunk as unknown as Json)
    t.match(chunks[0], {
      grounded: true,
      retrieval: { mode: 'hybrid' },
      model: 'llama3.2:latest+confluence',
    })
    t.equal(
      (chatCalls().at(-1)?.body as Body | undefined)?.model,
      'llama3.2:latest',
      'an alias is its base model',
    )
  })

  t.test('nothing found: the honest answer without the model, in both modes', async (t) => {
    const app = await buildTestApp(t, {
      ...rigApiEnv(rig),
      API_KEYS: READER_KEY,
      OLLAMA_URL: ollama.url,
      RAG_ENABLED: 'true',
      RAG_MIN_SIMILARITY: '0.999',
    })
    const strict = await app.listen({ host: '127.0.0.1', port: 0 })
    const client = new OpenAI({ baseURL: `${strict}/v1`, apiKey: READER_KEY, maxRetries: 0 })
    const before = chatCalls().length
    const res = (await client.chat.completions.create({
      model: 'llama3.2',
      messages: [question],
    })) as unknown as Json
    t.equal(
      res.choices[0].message.content,
      'The indexed Confluence spaces hold nothing on this question.',
    )
    t.equal(res.choices[0].finish_reason, 'stop')
    t.same(res.sources, [])
    t.ok(res.retrieval.below_floor > 0)
    t.same(res.usage, { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 })

    const stream = await client.chat.completions.create({
      model: 'llama3.2',
      messages: [question],
      stream: true,
      stream_options: { include_usage: true },
    })
    const chunks: Json[] = []
    for await (const chunk of stream) chunks.push(chunk as unknown as Json)
    t.match(chunks[0], { choices: [{ delta: { role: 'assistant' } }], sources: [] })
    t.equal(
      chunks[1]?.choices[0].delta.content,
      'The indexed Confluence spaces hold nothing on this question.',
    )
    t.match(chunks[2], { choices: [{ finish_reason: 'stop' }], cited: [] })
    t.match(chunks[3], { choices: [], usage: { total_tokens: 0 } })
    t.equal(chunks.length, 4)
    t.equal(chatCalls().length, before, 'the model was not asked')
  })
})

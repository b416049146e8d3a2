import OpenAI from 'openai'
import t, { type Test } from 'tap'
import { listenTestApp, READER_KEY } from '../../helpers/api.ts'
import { standIn } from '../../helpers/ollama.ts'

// Conversations as OpenAI clients really send them (a tool call and its result in the history,
// an image, an alias model name), through the official openai SDK over a real socket, and the
// message Ollama receives for each. Shapes the server cannot honour are a 400 whose message
// names the field and says why in plain words, as the SDK shows it (`400 <message>`).

// biome-ignore lint/suspicious/noExplicitAny: a test reads whatever the wire carried
type Json = Record<string, any>

const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=='

t.test('OpenAI message shapes over a real socket', async (t) => {
  const ollama = await standIn(t, {})
  const { url } = await listenTestApp(t, { OLLAMA_URL: ollama.url, API_KEYS: READER_KEY })
  const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: READER_KEY, maxRetries: 0 })
  const lastChat = () => ollama.requests.filter((r) => r.path === '/api/chat').at(-1)?.body as Json

  /** The error the SDK raises for a request, as a 400. */
  async function refused(
    t: Test,
    body: Json,
  ): Promise<InstanceType<typeof OpenAI.BadRequestError>> {
    const err = await openai.chat.completions.create(body as never).catch((e: unknown) => e)
    t.ok(err instanceof OpenAI.BadRequestError, String(err))
    return err as InstanceType<typeof OpenAI.BadRequestError>
  }

  t.test('a tool call and its result in the history reach Ollama as its own turns', async (t) => {
    const res = await openai.chat.completions.create({
      model: 'llama3.2',
      messages: [
        { role: 'user', content: 'How do I roll back billing?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'search_wiki', arguments: '{"query":"billing rollback"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'helm rollback billing' },
        { role: 'assistant', content: [{ type: 'refusal', refusal: 'I cannot.' }] },
        { role: 'user', content: 'and the checklist?' },
      ],
    })
    t.equal(res.choices[0]?.message.content, 'The sky is blue.')
    t.same(lastChat().messages, [
      { role: 'user', content: 'How do I roll back billing?' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [
          { function: { name: 'search_wiki', arguments: { query: 'billing rollback' } } },
        ],
      },
      { role: 'tool', content: 'helm rollback billing' },
      { role: 'assistant', content: 'I cannot.' },
      { role: 'user', content: 'and the checklist?' },
    ])

    // An assistant turn with no content at all (only tool calls) is as valid.
    await openai.chat.completions.create({
      model: 'llama3.2',
      messages: [
        { role: 'user', content: 'x' },
        {
          role: 'assistant',
          tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }],
        },
        { role: 'tool', tool_call_id: 'c', content: [{ type: 'text', text: 'done' }] },
        { role: 'user', content: 'y' },
      ],
    })
    t.same(lastChat().messages.slice(1, 3), [
      { role: 'assistant', content: '', tool_calls: [{ function: { name: 'f', arguments: {} } }] },
      { role: 'tool', content: 'done' },
    ])
  })

  t.test('tool call arguments that are not a JSON object: a 400 naming them', async (t) => {
    for (const args of ['{"query":', '[1,2]', 'null']) {
      const err = await refused(t, {
        model: 'llama3.2',
        messages: [
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              { id: 'a', type: 'function', function: { name: 'ok', arguments: '{}' } },
              { id: 'b', type: 'function', function: { name: 'f', arguments: args } },
            ],
          },
          { role: 'user', content: 'x' },
        ],
      })
      t.equal(err.param, 'messages[0].tool_calls[1].function.arguments', args)
      t.match(err.message, /^400 body\/messages\/0\/tool_calls\/1\/function\/arguments /)
      t.match(err.message, /a JSON object/)
    }
  })

  t.test('an image as a data: URL reaches Ollama as the message’s images', async (t) => {
    await openai.chat.completions.create({
      model: 'llama3.2',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is in' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
            { type: 'text', text: 'this picture?' },
            {
              type: 'image_url',
              image_url: { url: `data:image/jpeg;base64,${PNG}`, detail: 'low' },
            },
          ],
        },
      ],
    })
    t.same(lastChat().messages, [
      { role: 'user', content: 'What is in\nthis picture?', images: [PNG, PNG] },
    ])
  })

  t.test('an image by http(s) URL is refused, never fetched', async (t) => {
    const before = ollama.requests.length
    for (const link of [
      'https://example.com/cat.png',
      'http://169.254.169.254/latest',
      'file:///etc/passwd',
    ]) {
      const err = await refused(t, {
        model: 'llama3.2',
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'what is this?' },
              { type: 'image_url', image_url: { url: link } },
            ],
          },
        ],
      })
      t.equal(err.param, 'messages[0].content[1].image_url.url')
      t.match(err.message, /only data: URLs/)
      t.notMatch(err.message, /anyOf/)
    }
    t.equal(ollama.requests.length, before, 'Ollama was not asked')
  })

  t.test('audio and file parts, unknown parts: a 400 that says what is accepted', async (t) => {
    const parts: Array<[Json, string, RegExp]> = [
      [
        { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } },
        'messages[0].content[0].type',
        /audio.*not accepted/,
      ],
      [
        { type: 'file', file: { file_data: 'AAAA', filename: 'a.pdf' } },
        'messages[0].content[0].type',
        /file.*not accepted/,
      ],
      [{ type: 'video' }, 'messages[0].content[0].type', /'video'.*text, image_url/],
      [{ type: 'text' }, 'messages[0].content[0].text', /must be a string/],
      [{ type: 'image_url' }, 'messages[0].content[0].image_url.url', /data: URL/],
    ]
    for (const [part, param, message] of parts) {
      const err = await refused(t, {
        model: 'llama3.2',
        messages: [{ role: 'user', content: [part] }],
      })
      t.equal(err.param, param, JSON.stringify(part))
      t.match(err.message, message, err.message)
    }
  })

  t.test('schema errors say what is wanted in plain words, never an anyOf dump', async (t) => {
    const cases: Array<[Json, string, RegExp]> = [
      [
        { model: 'llama3.2', messages: [{ role: 'user', content: 42 }] },
        'messages[0].content',
        /^400 body\/messages\/0\/content must be a string, null or an array$/,
      ],
      [
        { model: 'llama3.2', messages: [{ role: 'robot', content: 'x' }] },
        'messages[0].role',
        /^400 body\/messages\/0\/role must be one of 'system', 'developer', 'user', 'assistant', 'tool'$/,
      ],
      [
        { model: 'llama3.2', messages: [{ role: 'user', content: ['x'] }] },
        'messages[0].content[0]',
        /^400 body\/messages\/0\/content\/0 must be an object$/,
      ],
      [
        { model: 'llama3.2', messages: [{ content: 'x' }] },
        'messages[0].role',
        /^400 body\/messages\/0\/role is required$/,
      ],
      [{ messages: [{ role: 'user', content: 'x' }] }, 'model', /^400 body\/model is required$/],
      [
        { model: 'llama3.2', messages: [{ role: 'user', content: 'x' }], stop: 3 },
        'stop',
        /^400 body\/stop must be a string, an array or null$/,
      ],
      [
        {
          model: 'llama3.2',
          messages: [{ role: 'user', content: 'x' }],
          stop: Array(17).fill('s'),
        },
        'stop',
        /^400 body\/stop must NOT have more than 16 items$/,
      ],
      [
        { model: 'llama3.2', messages: [{ role: 'user', content: 'x' }], rag: { space: ['ENG'] } },
        'rag.space',
        /^400 body\/rag\/space is not a field this server knows/,
      ],
    ]
    for (const [body, param, message] of cases) {
      const err = await refused(t, body)
      t.equal(err.param, param, err.message)
      t.match(err.message, message)
      t.notMatch(err.message, /anyOf|must match a schema/)
    }
  })

  t.test('an alias model name (+confluence) is its base model on /v1', async (t) => {
    const res = await openai.chat.completions.create({
      model: 'llama3.2:latest+confluence',
      messages: [{ role: 'user', content: 'hi' }],
    })
    t.equal(res.model, 'llama3.2:latest+confluence', 'the name asked for is echoed')
    t.equal(lastChat().model, 'llama3.2:latest', 'Ollama is asked for the base model')
    await openai.chat.completions.create({
      model: 'llama3.2+Confluence',
      messages: [{ role: 'user', content: 'hi' }],
    })
    t.equal(lastChat().model, 'llama3.2')

    const one = await openai.models.retrieve('llama3.2:latest+confluence')
    t.match(one, { id: 'llama3.2:latest', object: 'model' }, 'the base model answers')
    t.equal((await openai.models.retrieve('llama3.2+confluence')).id, 'llama3.2:latest')
    const missing = await openai.models
      .retrieve('no-such-model+confluence')
      .catch((e: unknown) => e)
    t.ok(missing instanceof OpenAI.NotFoundError, String(missing))
    t.match((missing as Error).message, /'no-such-model\+confluence' is not installed/)
  })
})

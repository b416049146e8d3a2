import t from 'tap'
import { relayNdjson, tokenTextOf } from '../../../services/api/src/lib/ndjson.ts'

async function* chunks(parts: Array<string>, fail?: Error) {
  for (const part of parts) yield Buffer.from(part)
  if (fail) throw fail
}

async function relay(
  parts: string[],
  options: Partial<Parameters<typeof relayNdjson>[1]> = {},
  fail?: Error,
) {
  let out = ''
  for await (const piece of relayNdjson(chunks(parts, fail), {
    interruptedMessage: (reason) => `cut: ${reason}`,
    isAborted: () => false,
    ...options,
  })) {
    out += piece.toString()
  }
  return out
}

t.test('lines are reassembled across chunks and passed through byte for byte', async (t) => {
  const out = await relay([
    '{"response":"\\u003cb',
    '\\u003e","done":false}\n{"respo',
    'nse":"","done":true}\n',
  ])
  t.equal(out, '{"response":"\\u003cb\\u003e","done":false}\n{"response":"","done":true}\n')
})

t.test('only a top-level done/success/error line is terminal', async (t) => {
  const tricky = [
    '{"response":"say \\"done\\":true","done":false}\n', // quoted inside a string
    '{"message":{"content":"x"},"tool":{"done":true},"done":false}\n', // nested key
    '["error","done":true]\n', // not JSON: passed through as data
    '"error"\n', // JSON, but not an object
    'null\n',
    '{"error":42,"done":false}\n', // error that is not a string
    '\n', // blank lines are dropped
    '{"done":true}\n',
  ]
  const out = await relay(tricky)
  t.equal(out, `${tricky.filter((l) => l !== '\n').join('')}`)
})

t.test('prelude first; the terminal line can be rewritten; nothing is read after it', async (t) => {
  const out = await relay(['{"done":false}\n{"done":true,"eval_count":2}\n{"late":1}\n'], {
    prelude: ['{"sources":[]}\n'],
    onTerminal: (line) => ({ ...line, usage: line.eval_count }),
  })
  t.equal(out, '{"sources":[]}\n{"done":false}\n{"done":true,"eval_count":2,"usage":2}\n')
})

t.test('chunks arriving after the terminal line are not read', async (t) => {
  t.equal(await relay(['{"done":true}\n', '{"late":1}\n']), '{"done":true}\n')
})

t.test("an upstream error line becomes the API's {error, message} line", async (t) => {
  const out = await relay(['{"done":false}\n{"error":"boom"}\n'])
  t.equal(out, '{"done":false}\n{"error":"ollama_error","message":"boom"}\n')
})

t.test('a pull ends at status success', async (t) => {
  const out = await relay(['{"status":"pulling manifest"}\n{"status":"success"}\n'])
  t.equal(out, '{"status":"pulling manifest"}\n{"status":"success"}\n')
})

t.test('a single object without a newline (a load reply) is completed', async (t) => {
  t.equal(
    await relay(['{"done":true,"done_reason":"load"}']),
    '{"done":true,"done_reason":"load"}\n',
  )
})

t.test('an early end or a broken connection gains an interrupted line', async (t) => {
  t.equal(
    await relay(['{"done":false}\n{"done":fa']),
    '{"done":false}\n{"error":"ollama_stream_interrupted","message":"cut: the upstream stream ended early"}\n',
  )
  t.equal(
    await relay(['{"done":false}\n'], {}, new Error('socket hang up')),
    '{"done":false}\n{"error":"ollama_stream_interrupted","message":"cut: socket hang up"}\n',
  )
})

t.test('after an abort nothing more is written', async (t) => {
  // The upstream read fails because the client went away: no error line for nobody.
  const failed = await relay(['{"done":false}\n'], { isAborted: () => true }, new Error('aborted'))
  t.equal(failed, '{"done":false}\n')
  // The upstream ended without a terminal line, but the client is already gone.
  const ended = await relay(['{"done":false}\n{"par'], { isAborted: () => true })
  t.equal(ended, '{"done":false}\n')
})

t.test('a terminal or error line is found however valid JSON spells it', async (t) => {
  const spellings = [
    '{"done": true}',
    '{"done" :\ttrue }',
    ' {"eval_count":1,"done":true}',
    '{"d\\u006fne":true}',
    '{"\\u0064\\u006F\\u006E\\u0065":true}',
    '{"status": "success"}',
    '{"status":"succ\\u0065ss"}',
    '{"st\\u0061tus":"success"}',
  ]
  for (const line of spellings) {
    t.equal(
      await relay([`{"done":false}\n${line}\n`, '{"late":1}\n']),
      `{"done":false}\n${line}\n`,
      line,
    )
  }
  const errors = ['{"error": "boom"}', '{"\\u0065rror":"boom"}', '{ "error" : "boom" }']
  for (const line of errors) {
    t.equal(await relay([`${line}\n`]), '{"error":"ollama_error","message":"boom"}\n', line)
  }
  // Look-alikes stay data: escaped quotes, strings that hold the words, nested keys.
  const data = [
    '{"response":"\\"done\\": true","done":false}',
    '{"response":"true success error \\\\u0064","done":false}',
    '{"message":{"content":"x","d\\u006fne":true},"done":false}',
  ]
  for (const line of data) {
    t.match(await relay([`${line}\n`]), /ollama_stream_interrupted/, line)
  }
})

t.test('the relay stops pulling from upstream once the terminal line is in', async (t) => {
  const pulled: string[] = []
  let closed = false
  async function* upstream() {
    try {
      for (const part of [
        '{"done":false}\n{"do',
        'ne": true}\n',
        '{"late":1}\n',
        '{"later":2}\n',
      ]) {
        pulled.push(part)
        yield Buffer.from(part)
      }
    } finally {
      closed = true
    }
  }
  let out = ''
  for await (const piece of relayNdjson(upstream(), {
    interruptedMessage: (reason) => `cut: ${reason}`,
    isAborted: () => false,
  })) {
    out += piece.toString()
  }
  t.equal(out, '{"done":false}\n{"done": true}\n')
  t.same(pulled, ['{"done":false}\n{"do', 'ne": true}\n'], 'no chunk pulled after the terminal one')
  t.ok(closed, 'the upstream iterator was closed (its connection released)')
})

t.test('the answer text a line carries, for chat and generate alike', async (t) => {
  const line = (value: unknown) => Buffer.from(JSON.stringify(value))
  t.equal(
    tokenTextOf(line({ message: { role: 'assistant', content: 'Hi [1]' }, done: false })),
    'Hi [1]',
  )
  t.equal(tokenTextOf(line({ response: ' there', done: false })), ' there')
  t.equal(
    tokenTextOf({ message: { content: 'last' }, done: true }),
    'last',
    'a parsed terminal line',
  )
  t.equal(tokenTextOf(line({ message: { content: 42 } })), '')
  t.equal(tokenTextOf(line({ status: 'pulling' })), '')
  t.equal(tokenTextOf(line(null)), '')
  t.equal(tokenTextOf(Buffer.from('not json')), '')
  // A relay that collects the text sees every data line once, the terminal one through onTerminal.
  let text = ''
  const out: string[] = []
  for await (const part of relayNdjson(
    (async function* () {
      yield Buffer.from(
        '{"message":{"content":"a"},"done":false}\n{"message":{"content":"b"},"done":false}\n',
      )
      yield Buffer.from('{"message":{"content":"c"},"done":true}\n')
    })(),
    {
      onData: (l) => {
        text += tokenTextOf(l)
      },
      onTerminal: (l) => {
        text += tokenTextOf(l)
        return l
      },
      interruptedMessage: () => 'cut',
      isAborted: () => false,
    },
  )) {
    out.push(part.toString())
  }
  t.equal(text, 'abc')
  t.equal(out.join('').split('\n').filter(Boolean).length, 3)
})

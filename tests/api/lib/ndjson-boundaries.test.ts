import t from 'tap'
import { relayNdjson } from '../../../services/api/src/lib/ndjson.ts'

// Cases the mutation run (`pnpm bench mutation`, group ndjson) showed unguarded: a prelude of
// several lines, and an upstream failure right after a terminal line that lacks its newline.

async function* chunks(parts: string[], fail?: Error) {
  for (const part of parts) yield Buffer.from(part)
  if (fail) throw fail
}

async function pieces(parts: string[], prelude: string[] | undefined, fail?: Error) {
  const out: string[] = []
  for await (const piece of relayNdjson(chunks(parts, fail), {
    prelude,
    interruptedMessage: (reason) => `cut: ${reason}`,
    isAborted: () => false,
  })) {
    out.push(piece.toString())
  }
  return out
}

t.test('a prelude of several lines is written as they are, an empty one not at all', async (t) => {
  const done = '{"done":true}\n'
  t.same(await pieces([done], ['{"a":1}\n', '{"b":2}\n']), ['{"a":1}\n{"b":2}\n', done])
  t.same(await pieces([done], []), [done])
})

t.test('an upstream failure after an unfinished terminal line is an interruption', async (t) => {
  const out = await pieces(['{"x":1}\n{"done":true}'], undefined, new Error('reset'))
  t.equal(out.join(''), '{"x":1}\n{"error":"ollama_stream_interrupted","message":"cut: reset"}\n')
})

t.test('a chunk that completes no line is written as nothing, not as an empty piece', async (t) => {
  const out = await pieces(
    ['{"response":"a', '"}\n{"respo', 'nse":"b"}\n', '{"done":', 'true}'],
    [],
  )
  t.same(out, ['{"response":"a"}\n', '{"response":"b"}\n', '{"done":true}\n'])
})

t.test('a line that is JSON but no object is data, whatever it holds', async (t) => {
  for (const line of ['true', '"error"', '"done"', '12', '[{"done":true}]', '"\\u0065rror"']) {
    const out = await pieces([`${line}\n`], [])
    t.equal(out[0], `${line}\n`, `${line} is passed on`)
    t.match(out.at(-1), /ollama_stream_interrupted/, `${line} ends nothing`)
  }
})

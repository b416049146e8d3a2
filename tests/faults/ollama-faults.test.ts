import { Ollama } from 'ollama'
import OpenAI from 'openai'
import t from 'tap'
import { listenTestApp, READER_KEY } from '../helpers/api.ts'
import { GROUNDED_PAGES } from '../helpers/grounded.ts'
import { ingestRig, rigApiEnv, sameAsFromScratch, syncFromScratch } from '../helpers/ingest.ts'
import { enqueueAsApi, LONG, seeded, workerProcess } from './faults.ts'

// Issue 13, fault 3: an Ollama that fails 30% of embed calls and cuts 10% of chat streams (which
// calls, from a printed seed). Ingestion completes through retries with the index a fault-free
// sync builds; every cut chat stream ends with an error in its route's wire format (an NDJSON
// `{error}` line on /api/chat and /ollama/api/chat, an SSE error event on /v1/chat/completions),
// never as a silently short answer. FAULTS_LONG=1: more pages and chats.

const CHATS = LONG ? 300 : 30

/** `share` of every 10 calls (exactly, at seeded positions) are picked: `pick()` says if this one is. */
function deck(random: () => number, share: number) {
  let cards: boolean[] = []
  return () => {
    if (cards.length === 0) {
      cards = Array.from({ length: 10 }, (_, i) => i < share)
      for (let i = cards.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1))
        ;[cards[i], cards[j]] = [cards[j] as boolean, cards[i] as boolean]
      }
    }
    return cards.pop() as boolean
  }
}

type Ending = 'done' | 'error' | 'short'

/** How a streamed answer ended: complete, with an error in its wire format, or neither. */
function ending(route: string, status: number, text: string): Ending {
  if (status !== 200) return /error/.test(text) ? 'error' : 'short'
  if (route === '/v1/chat/completions') {
    const events = text.split('\n\n').filter((e) => e.startsWith('data: '))
    const last = events.at(-1)?.slice(6)
    if (last === '[DONE]') return 'done'
    return last !== undefined && 'error' in JSON.parse(last) ? 'error' : 'short'
  }
  if (!text.endsWith('\n')) return 'short'
  const last = JSON.parse(text.trimEnd().split('\n').at(-1) as string) as Record<string, unknown>
  if (last.done === true) return 'done'
  return typeof last.error === 'string' ? 'error' : 'short'
}

t.test('30% of embeds failing, 10% of chat streams cut: nothing lost, nothing short', async (t) => {
  const random = seeded(t, 'ollama faults')
  const failEmbed = deck(random, 3)
  const cutChat = deck(random, 1)
  let faulty = true
  let lastChatCut: boolean | undefined
  // Batches of 2 pages: a dozen embed calls or more, so the deck's 3 in 10 fail some of them.
  const pages = GROUNDED_PAGES.concat(
    Array.from({ length: LONG ? 100 : 20 }, (_, i) => ({
      ...(GROUNDED_PAGES[i % GROUNDED_PAGES.length] as (typeof GROUNDED_PAGES)[number]),
      id: String(5000 + i),
      title: `Copy ${i}`,
    })),
  )
  const rig = await ingestRig(t, {
    pages,
    ollama: {
      embedDimension: 64,
      tokens: ['Deploy', ' with', ' helm', ' upgrade', ' billing', '.'],
      faultFor: ({ path }) => {
        if (!faulty) return undefined
        if (path === '/api/embed' && failEmbed()) {
          return { failBeforeOutput: { status: 500, error: 'llama runner process has terminated' } }
        }
        if (path === '/api/chat') {
          lastChatCut = cutChat()
          if (lastChatCut) {
            return {
              truncateAfterTokens: Math.floor(random() * 6),
              truncateMode: random() < 0.5 ? 'end' : 'destroy',
            }
          }
        }
        return undefined
      },
    },
    env: { SYNC_BATCH_PAGES: '2' },
  })
  const worker = workerProcess(t, rig)
  await worker.waitFor(/worker started/, 30_000)
  const source = await rig.register()
  // (One of the sync's own embed calls may fail too: its attempt is retried, as the api queues it.)
  const run = await rig.waitFor(await enqueueAsApi(t, rig, source), 120_000)
  t.equal(run.state, 'completed', run.failedReason ?? '')
  t.equal(run.progress.failed, 0, 'no page given up on')
  const failedEmbeds = rig.ollama.requests.filter((r) => r.path === '/api/embed').length
  t.ok(failedEmbeds > rig.ollama.embedCalls, 'some embed calls failed and were retried')

  const { url } = await listenTestApp(t, {
    API_KEYS: READER_KEY,
    ...rigApiEnv(rig),
    OLLAMA_URL: rig.ollama.url,
    RAG_ENABLED: 'true',
  })
  const routes = ['/api/chat', '/v1/chat/completions', '/ollama/api/chat']
  const seen = { cut: 0, done: 0, error: 0 }
  for (let i = 0; i < CHATS; i++) {
    const route = routes[i % routes.length] as string
    lastChatCut = undefined
    const res = await fetch(`${url}${route}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${READER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'llama3.2',
        stream: true,
        messages: [{ role: 'user', content: 'How is the billing service deployed with helm?' }],
      }),
      signal: AbortSignal.timeout(30_000),
    })
    const text = await res.text()
    const end = ending(route, res.status, text)
    seen[end === 'short' ? 'cut' : end]++
    if (lastChatCut === true) {
      t.equal(end, 'error', `${route} #${i}: the cut stream ends with an error: ${text}`)
    } else {
      t.not(end, 'short', `${route} #${i}: never a silently short answer: ${text}`)
    }
  }
  t.comment(`chats: ${seen.done} complete, ${seen.error} ended with an error`)
  t.ok(seen.done > 0 && seen.error > 0, 'both complete answers and reported failures')

  // The same through the clients users run: a cut answer is an exception in the openai and the
  // ollama SDK, never an iteration that just stops.
  const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: READER_KEY, maxRetries: 0 })
  const ollama = new Ollama({
    host: `${url}/ollama`,
    headers: { Authorization: `Bearer ${READER_KEY}` },
  })
  const messages = [{ role: 'user' as const, content: 'How is billing deployed with helm?' }]
  const sdk = { finished: 0, threw: 0 }
  for (let i = 0; i < CHATS; i++) {
    lastChatCut = undefined
    let outcome: 'finished' | 'threw' = 'finished'
    let text = ''
    try {
      if (i % 2 === 0) {
        const stream = await openai.chat.completions.create({
          model: 'llama3.2',
          messages,
          stream: true,
        })
        let reason: string | null | undefined
        for await (const chunk of stream) {
          text += chunk.choices[0]?.delta.content ?? ''
          reason = chunk.choices[0]?.finish_reason ?? reason
        }
        t.ok(reason, `openai #${i}: a finished answer has a finish_reason (${text})`)
      } else {
        let done = false
        for await (const part of await ollama.chat({ model: 'llama3.2', messages, stream: true })) {
          text += part.message.content
          done ||= part.done
        }
        t.ok(done, `ollama #${i}: a finished answer ends with done (${text})`)
      }
    } catch {
      outcome = 'threw'
    }
    sdk[outcome]++
    if (lastChatCut === true) t.equal(outcome, 'threw', `SDK #${i}: a cut answer is an error`)
  }
  t.comment(`SDK chats: ${sdk.finished} finished, ${sdk.threw} threw`)
  t.ok(sdk.finished > 0 && sdk.threw > 0, 'both finished answers and errors')

  // The same space synced again with a healthy Ollama: the same chunks and vectors.
  faulty = false
  const scratch = await syncFromScratch(t, rig)
  await sameAsFromScratch(t, rig, source, scratch)
  worker.child.kill('SIGTERM')
  t.equal((await worker.exit).code, 0)
})

import type { FastifyInstance } from 'fastify'
import t from 'tap'
import {
  isConversationId,
  MAX_CONVERSATIONS,
  MAX_MESSAGE_CHARS,
  MAX_SOURCES,
  MAX_TITLE_CHARS,
  newConversationId,
  type StoredSource,
} from '../../services/api/src/plugins/app/conversations.ts'
import { buildTestApp } from '../helpers/api.ts'
import { startRedis } from '../helpers/redis.ts'

// fastify.conversations against a real Redis: what the chat route reads and appends.

const ALICE = '0123456789abcdef'
const BOB = 'fedcba9876543210'

const source = (n: number) =>
  ({
    n,
    title: `Page ${n}`,
    url: `https://wiki.example/p/${n}#s`,
    space: 'ENG',
    updated_at: '2026-01-01T00:00:00.000Z',
    score: 0.5,
    snippet: `snippet ${n}`,
    cited: n === 1,
    breadcrumb: 'Home > Page',
    heading_path: 'Setup',
    page_id: String(n),
    chunk_id: `${n}:0`,
  }) as StoredSource

t.test('conversations store', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const env = { REDIS_URL: redis.url, CONVERSATION_TTL_S: '600', CONVERSATION_MAX_TURNS: '4' }
  const app: FastifyInstance = await buildTestApp(t, env)
  const store = app.conversations
  /** An append that writes (the conversation was never deleted). */
  const append = async (...args: Parameters<typeof store.append>) =>
    (await store.append(...args)) as { id: string }

  t.test('append creates, load reads it back, titled by the first user message', async (t) => {
    const { id } = await append(ALICE, undefined, [
      { role: 'user', content: '  How do I\n\tdeploy   the agent?  ' },
      { role: 'assistant', content: 'See [1].', sources: [source(1)] },
    ])
    t.ok(isConversationId(id))
    const conv = await store.load(ALICE, id)
    t.match(conv, {
      id,
      title: 'How do I deploy the agent?',
      messages: [
        { role: 'user', content: '  How do I\n\tdeploy   the agent?  ' },
        { role: 'assistant', content: 'See [1].', sources: [source(1)] },
      ],
    })
    t.notOk(Object.hasOwn(conv?.messages[0] ?? {}, 'sources'), 'a message without sources has none')
    t.equal(conv?.created_at, conv?.updated_at)
    t.equal(conv?.messages[0]?.created_at, conv?.created_at, 'messages are stamped on append')

    // A follow-up keeps the title and creation time, moves updated_at.
    await new Promise((r) => setTimeout(r, 5))
    const given = '2026-01-02T03:04:05.000Z'
    t.same(await append(ALICE, id, [{ role: 'user', content: 'And on DC?', created_at: given }]), {
      id,
    })
    const after = await store.load(ALICE, id)
    t.equal(after?.title, conv?.title)
    t.equal(after?.created_at, conv?.created_at)
    t.not(after?.updated_at, conv?.updated_at)
    t.equal(after?.messages.length, 3)
    t.equal(after?.messages[2]?.created_at, given, 'a given created_at is kept')
  })

  t.test('another owner never reads, lists or deletes it', async (t) => {
    const { id } = await append(ALICE, undefined, [{ role: 'user', content: 'mine' }])
    t.equal(await store.load(BOB, id), null)
    t.notOk((await store.list(BOB)).some((c) => c.id === id))
    t.equal(await store.remove(BOB, id), false)
    t.ok(await store.load(ALICE, id), 'still there for its owner')
  })

  t.test('the newest messages are kept, up to CONVERSATION_MAX_TURNS', async (t) => {
    const { id } = await append(ALICE, undefined, [
      { role: 'user', content: 'm1' },
      { role: 'assistant', content: 'm2' },
      { role: 'user', content: 'm3' },
    ])
    await append(ALICE, id, [
      { role: 'assistant', content: 'm4' },
      { role: 'user', content: 'm5' },
      { role: 'assistant', content: 'm6' },
    ])
    const conv = await store.load(ALICE, id)
    t.same(
      conv?.messages.map((m) => m.content),
      ['m3', 'm4', 'm5', 'm6'],
    )
    t.equal(conv?.title, 'm1', 'the title stays when its message is trimmed away')
  })

  t.test('sizes are bounded: content, title, sources', async (t) => {
    const long = 'x'.repeat(MAX_MESSAGE_CHARS + 100)
    const sources = Array.from({ length: MAX_SOURCES + 5 }, (_, i) => source(i))
    const { id } = await append(ALICE, undefined, [
      { role: 'assistant', content: 'no user message yet' },
      { role: 'user', content: long },
      { role: 'assistant', content: 'ok', sources },
    ])
    const conv = await store.load(ALICE, id)
    t.equal(conv?.messages[1]?.content.length, MAX_MESSAGE_CHARS)
    t.equal(conv?.title.length, MAX_TITLE_CHARS)
    t.match(conv?.title, /^x+…$/)
    t.equal(conv?.messages[2]?.sources?.length, MAX_SOURCES)

    const untitled = await append(ALICE, undefined, [{ role: 'assistant', content: 'hi' }])
    t.equal((await store.load(ALICE, untitled.id))?.title, '', 'no user message: no title')
  })

  t.test('TTL: every key expires, and each append refreshes it', async (t) => {
    const { id } = await append(BOB, undefined, [{ role: 'user', content: 'ttl' }])
    const keys = [
      `cnfl:conversations:${BOB}`,
      `cnfl:conversation:${BOB}:${id}`,
      `cnfl:conversation:${BOB}:${id}:msgs`,
    ]
    for (const key of keys) {
      const ttl = await app.redis.ttl(key)
      t.ok(ttl > 590 && ttl <= 600, `${key} expires in CONVERSATION_TTL_S (${ttl})`)
    }
    for (const key of keys) await app.redis.expire(key, 30)
    // An empty append only touches the conversation.
    await append(BOB, id, [])
    for (const key of keys) t.ok((await app.redis.ttl(key)) > 590, `${key} refreshed`)
    t.equal((await store.load(BOB, id))?.messages.length, 1)
  })

  t.test(
    'list: newest first, with message counts; expired and deleted ones drop out',
    async (t) => {
      const owner = 'aaaaaaaaaaaaaaaa'
      t.same(await store.list(owner), [], 'nothing yet')
      const first = await append(owner, undefined, [{ role: 'user', content: 'first' }])
      await new Promise((r) => setTimeout(r, 5))
      const second = await append(owner, undefined, [
        { role: 'user', content: 'second' },
        { role: 'assistant', content: 'answer' },
      ])
      await new Promise((r) => setTimeout(r, 5))
      const third = await append(owner, undefined, [{ role: 'user', content: 'third' }])
      await new Promise((r) => setTimeout(r, 5))
      await append(owner, first.id, [{ role: 'assistant', content: 'bumped' }])

      const listed = await store.list(owner)
      t.same(
        listed.map((c) => [c.id, c.title, c.message_count]),
        [
          [first.id, 'first', 2],
          [third.id, 'third', 1],
          [second.id, 'second', 2],
        ],
      )
      t.match(listed[0], { created_at: String, updated_at: String })
      t.same(
        (await store.list(owner, 1)).map((c) => c.id),
        [first.id],
      )

      // Its keys gone (expired) but still in the index: skipped and dropped from the index.
      await app.redis.del(
        `cnfl:conversation:${owner}:${third.id}`,
        `cnfl:conversation:${owner}:${third.id}:msgs`,
      )
      t.same(
        (await store.list(owner)).map((c) => c.id),
        [first.id, second.id],
      )
      t.equal(await app.redis.zscore(`cnfl:conversations:${owner}`, third.id), null)

      // An index entry older than the TTL is dropped before reading.
      await app.redis.zadd(`cnfl:conversations:${owner}`, Date.now() - 601_000, second.id)
      t.same(
        (await store.list(owner)).map((c) => c.id),
        [first.id],
      )
    },
  )

  t.test(
    'remove deletes once, and an answer saved into it afterwards does not bring it back',
    async (t) => {
      const { id } = (await append(ALICE, undefined, [{ role: 'user', content: 'bye' }])) as {
        id: string
      }
      t.equal(await store.remove(ALICE, id), true)
      t.equal(await store.load(ALICE, id), null)
      t.equal(await store.remove(ALICE, id), false)
      t.notOk((await store.list(ALICE)).some((c) => c.id === id))
      t.equal(await store.append(ALICE, id, [{ role: 'assistant', content: 'late answer' }]), null)
      t.equal(await store.load(ALICE, id), null)
      t.notOk(
        (await store.list(ALICE)).some((c) => c.id === id),
        'not listed either',
      )
      // Only its owner's copy: another owner's conversation under the same id is untouched.
      t.ok(await store.append(BOB, id, [{ role: 'user', content: 'bob' }]))
      t.match(await store.load(BOB, id), { title: 'bob' })
    },
  )

  t.test('an owner keeps at most MAX_CONVERSATIONS, the least recently updated go', async (t) => {
    const owner = 'bbbbbbbbbbbbbbbb'
    const ids: string[] = []
    for (let i = 0; i < MAX_CONVERSATIONS; i++) {
      ids.push((await append(owner, undefined, [{ role: 'user', content: `q${i}` }])).id)
    }
    // Many were updated in the same millisecond: space their update times out, oldest first.
    const base = Date.now() - 100_000
    await app.redis.zadd(`cnfl:conversations:${owner}`, ...ids.flatMap((id, i) => [base + i, id]))
    // The first is touched, so the second is the least recently updated when one more comes.
    await append(owner, ids[0], [{ role: 'assistant', content: 'a0' }])
    const last = await append(owner, undefined, [{ role: 'user', content: 'one too many' }])
    t.equal(await app.redis.zcard(`cnfl:conversations:${owner}`), MAX_CONVERSATIONS)
    t.equal(await store.load(owner, ids[1] as string), null, 'the least recently updated is gone')
    t.equal(await app.redis.exists(`cnfl:conversation:${owner}:${ids[1]}:msgs`), 0)
    t.ok(await store.load(owner, ids[0] as string), 'a touched one stays')
    t.ok(await store.load(owner, ids[2] as string))
    t.ok(await store.load(owner, last.id))
  })

  t.test('malformed ids read as nothing and are never appended to', async (t) => {
    for (const bad of [
      '',
      'conv_short',
      `conv_${'a'.repeat(21)}*`,
      '../x',
      `src_${'a'.repeat(22)}`,
    ]) {
      t.equal(await store.load(ALICE, bad), null)
      t.equal(await store.remove(ALICE, bad), false)
      await t.rejects(
        store.append(ALICE, bad, [{ role: 'user', content: 'x' }]),
        /not a conversation id/,
      )
    }
    t.ok(isConversationId(newConversationId()))
    t.not(newConversationId(), newConversationId())
  })
})

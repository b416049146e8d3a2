import { randomBytes } from 'node:crypto'
import { QUEUE_PREFIX } from '@confluence-bot/shared'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Static } from 'typebox'
import type { SourceSchema } from '../../schemas/chat.ts'

// Conversations live in Redis, so a follow-up is answered in context whichever api replica
// takes it, and after a restart. Per owner (the hash id of an API key, or `local`):
//   cnfl:conversations:<owner>            sorted set of conversation ids by last update (ms)
//   cnfl:conversation:<owner>:<id>        hash: title, created_at, updated_at
//   cnfl:conversation:<owner>:<id>:msgs   list of messages (JSON), oldest first
// Every key is namespaced by owner: an id alone never reaches another key's conversation. Each
// append refreshes the TTL of all three keys and trims the list to CONVERSATION_MAX_TURNS, in
// one MULTI, so two replicas appending to one conversation at once both land and the trim holds.

/** A source an assistant message cited, as the chat answer returned it. */
export type StoredSource = Static<typeof SourceSchema>

/** One message as the chat route hands it over (created_at defaults to the append time). */
export type StoredMessage = {
  role: 'user' | 'assistant'
  content: string
  created_at?: string
  /** An assistant message's sources, numbered as its citations are ([1] is the first). */
  sources?: readonly StoredSource[]
}

export type ConversationSummary = {
  id: string
  title: string
  created_at: string
  updated_at: string
  message_count: number
}

/** A message as load() reads it back: always stamped. */
export type ConversationMessage = Omit<StoredMessage, 'created_at' | 'sources'> & {
  created_at: string
  sources?: StoredSource[]
}

export type Conversation = Omit<ConversationSummary, 'message_count'> & {
  messages: ConversationMessage[]
}

export interface Conversations {
  /** The owner's conversation, or null (unknown, expired, deleted, another owner's, malformed). */
  load(owner: string, id: string): Promise<Conversation | null>
  /**
   * Adds messages to the owner's conversation `id`, or to a new one when `id` is undefined (its
   * title: the first user message, trimmed). An id that has expired meanwhile starts again under
   * the same id; one its owner deleted stays deleted (null: nothing was written). Refreshes the
   * TTL and keeps the newest CONVERSATION_MAX_TURNS messages.
   */
  append(
    owner: string,
    id: string | undefined,
    messages: readonly StoredMessage[],
  ): Promise<{ id: string } | null>
  /** The owner's conversations, most recently updated first, at most `limit`. */
  list(owner: string, limit?: number): Promise<ConversationSummary[]>
  /** Deletes the owner's conversation; false when there was none. */
  remove(owner: string, id: string): Promise<boolean>
}

declare module 'fastify' {
  interface FastifyInstance {
    conversations: Conversations
  }
}

/** `conv_` and 16 random bytes in base64url: unguessable, and safe in a URL and a Redis key. */
export const CONVERSATION_ID_PATTERN = '^conv_[A-Za-z0-9_-]{22}$'
const ID = new RegExp(CONVERSATION_ID_PATTERN)

export const isConversationId = (id: string): boolean => ID.test(id)

export const newConversationId = (): string => `conv_${randomBytes(16).toString('base64url')}`

/** A stored message's content is cut at this many characters (a chat answer is far shorter). */
export const MAX_MESSAGE_CHARS = 32_000
/** A title is the first user message, on one line, cut at this many characters. */
export const MAX_TITLE_CHARS = 80
/** An assistant message keeps at most this many sources. */
export const MAX_SOURCES = 50
/**
 * An owner keeps at most this many conversations: a new one beyond it deletes the least recently
 * updated, so one key cannot fill Redis however many conversations it starts within the TTL.
 */
export const MAX_CONVERSATIONS = 1000
/** list() answers at most this many conversations. */
export const MAX_LIST = 200

const indexKey = (owner: string) => `${QUEUE_PREFIX}:conversations:${owner}`
const metaKey = (owner: string, id: string) => `${QUEUE_PREFIX}:conversation:${owner}:${id}`
const messagesKey = (owner: string, id: string) => `${metaKey(owner, id)}:msgs`
/**
 * Marks a conversation its owner deleted, for as long as it could have lived: an answer still
 * streaming into it when it was deleted must not bring it back when it is saved.
 */
const deletedKey = (owner: string, id: string) => `${metaKey(owner, id)}:deleted`

function titleOf(messages: readonly StoredMessage[]): string {
  const first = messages.find((m) => m.role === 'user' && m.content.trim() !== '')
  const line = first ? first.content.trim().replace(/\s+/g, ' ') : ''
  return line.length > MAX_TITLE_CHARS ? `${line.slice(0, MAX_TITLE_CHARS - 1)}…` : line
}

function stored(message: StoredMessage, now: string): string {
  const { role, content, created_at, sources } = message
  return JSON.stringify({
    role,
    content: content.slice(0, MAX_MESSAGE_CHARS),
    created_at: created_at ?? now,
    ...(sources ? { sources: sources.slice(0, MAX_SOURCES) } : {}),
  })
}

async function conversations(fastify: FastifyInstance) {
  const redis = fastify.redis
  const ttl = fastify.config.CONVERSATION_TTL_S
  const maxTurns = fastify.config.CONVERSATION_MAX_TURNS

  /** Drops index entries whose conversation has expired by now (their keys are gone too). */
  const expireIndex = (owner: string, nowMs: number) =>
    redis.zremrangebyscore(indexKey(owner), '-inf', nowMs - ttl * 1000)

  /** Deletes the owner's `n` least recently updated conversations. */
  const evict = async (owner: string, n: number) => {
    // ZPOPMIN takes them off the index atomically: replicas evicting at once never both do.
    const popped = await redis.zpopmin(indexKey(owner), n)
    const tx = redis.multi()
    for (let i = 0; i < popped.length; i += 2) {
      const id = popped[i] as string
      tx.del(metaKey(owner, id), messagesKey(owner, id))
    }
    await tx.exec()
  }

  const store: Conversations = {
    async load(owner, id) {
      if (!isConversationId(id)) return null
      const [[, meta], [, raw]] = (await redis
        .multi()
        .hgetall(metaKey(owner, id))
        .lrange(messagesKey(owner, id), 0, -1)
        .exec()) as [[null, Record<string, string>], [null, string[]]]
      if (meta.created_at === undefined) return null
      return {
        id,
        title: meta.title as string,
        created_at: meta.created_at,
        updated_at: meta.updated_at as string,
        messages: raw.map((m) => JSON.parse(m)),
      }
    },

    async append(owner, id, messages) {
      if (id !== undefined && !isConversationId(id)) {
        throw new Error('append: not a conversation id')
      }
      const target = id ?? newConversationId()
      const nowMs = Date.now()
      const now = new Date(nowMs).toISOString()
      const meta = metaKey(owner, target)
      const list = messagesKey(owner, target)
      const tx = redis
        .multi()
        // Read in the same transaction as the writes: deleted before them, they are undone below;
        // deleted after them, the delete removes them.
        .exists(deletedKey(owner, target))
        // HSETNX: the title and creation time are set by the first append only.
        .hsetnx(meta, 'title', titleOf(messages))
        .hsetnx(meta, 'created_at', now)
        .hset(meta, 'updated_at', now)
      if (messages.length > 0) tx.rpush(list, ...messages.map((m) => stored(m, now)))
      const replies = (await tx
        .ltrim(list, -maxTurns, -1)
        .expire(meta, ttl)
        .expire(list, ttl)
        .zadd(indexKey(owner), nowMs, target)
        .expire(indexKey(owner), ttl)
        .zremrangebyscore(indexKey(owner), '-inf', nowMs - ttl * 1000)
        .zcard(indexKey(owner))
        .exec()) as [null, unknown][]
      if ((replies[0] as [null, number])[1] === 1) {
        await redis.multi().del(meta, list).zrem(indexKey(owner), target).exec()
        return null
      }
      const count = (replies[replies.length - 1] as [null, number])[1]
      if (count > MAX_CONVERSATIONS) await evict(owner, count - MAX_CONVERSATIONS)
      return { id: target }
    },

    async list(owner, limit = MAX_LIST) {
      await expireIndex(owner, Date.now())
      const ids = await redis.zrevrange(indexKey(owner), 0, Math.min(limit, MAX_LIST) - 1)
      if (ids.length === 0) return []
      const read = redis.multi()
      for (const id of ids) read.hgetall(metaKey(owner, id)).llen(messagesKey(owner, id))
      const replies = (await read.exec()) as [null, unknown][]
      const out: ConversationSummary[] = []
      const gone: string[] = []
      ids.forEach((id, i) => {
        const meta = (replies[2 * i] as [null, Record<string, string>])[1]
        const count = (replies[2 * i + 1] as [null, number])[1]
        // A conversation deleted by another replica between the two reads is skipped.
        if (meta.created_at === undefined) {
          gone.push(id)
          return
        }
        out.push({
          id,
          title: meta.title as string,
          created_at: meta.created_at,
          updated_at: meta.updated_at as string,
          message_count: count,
        })
      })
      if (gone.length > 0) await redis.zrem(indexKey(owner), ...gone)
      return out
    },

    async remove(owner, id) {
      if (!isConversationId(id)) return false
      const [[, deleted]] = (await redis
        .multi()
        .del(metaKey(owner, id), messagesKey(owner, id))
        .zrem(indexKey(owner), id)
        .set(deletedKey(owner, id), '1', 'EX', ttl)
        .exec()) as [[null, number], [null, number]]
      return deleted > 0
    },
  }
  fastify.decorate('conversations', store)
}

export default fp(conversations, {
  name: 'conversations',
  dependencies: ['config', 'redis'],
  fastify: '5.x',
})

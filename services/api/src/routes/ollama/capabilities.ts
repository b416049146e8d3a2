import { AppError, ErrorCode } from '@confluence-bot/shared'
import type { FastifyInstance } from 'fastify'

// What a model can do, as Ollama's /api/show says (`capabilities`: `["completion", "tools"]`,
// `["embedding"]`…). A grounded alias is a chat model, so it is offered only for models that
// can complete, and a chat with the alias of one that cannot is refused before anything is
// retrieved. Older Ollama servers do not report capabilities: then nothing is known, and the
// model is taken as able to chat (its own 400 says otherwise, as before capabilities existed).

/** A model as /api/tags lists it (newer Ollama servers add `capabilities` themselves). */
export type ListedModel = {
  name: string
  model: string
  digest?: string
  capabilities?: unknown
  [field: string]: unknown
}

/** How long a model's capabilities, asked by name for a chat, are trusted. */
const BY_NAME_TTL_MS = 10 * 60 * 1000

/** The capabilities in a show or tags answer, or undefined when it has none (an older Ollama). */
const capabilitiesIn = (answer: { capabilities?: unknown }): readonly string[] | undefined =>
  Array.isArray(answer.capabilities) ? answer.capabilities : undefined

/** False only when Ollama says the model cannot complete (chat, generate). */
const completes = (capabilities: readonly string[] | undefined) =>
  capabilities?.includes('completion') ?? true

export function createCapabilities(fastify: FastifyInstance) {
  const { ollama } = fastify
  // The listing's answers, by name and digest: a model that changes gets another digest, so an
  // entry is never stale, and each listing keeps only the models it still lists.
  let listed = new Map<string, readonly string[] | undefined>()
  const byName = new Map<string, { value: readonly string[] | undefined; until: number }>()

  /** Ollama's /api/show capabilities; an error status is Ollama's error, thrown. */
  async function show(model: string, signal?: AbortSignal) {
    const response = await ollama.post('/api/show', { model }, signal)
    if (response.statusCode >= 400) throw await ollama.error(response)
    return capabilitiesIn(await ollama.json<{ capabilities?: unknown }>(response))
  }

  /**
   * For each listed model, whether it can chat. A model whose show fails is taken as able to:
   * hiding every grounded alias while Ollama hiccups would empty a client's model picker of
   * them, whereas an alias listed wrongly is refused at once with Ollama's own 400. A failure
   * is not remembered, so the next listing asks again.
   */
  async function canChatListed(models: readonly ListedModel[]): Promise<boolean[]> {
    const next = new Map<string, readonly string[] | undefined>()
    const answers = await Promise.all(
      models.map(async (model) => {
        const own = capabilitiesIn(model)
        if (own !== undefined) return own
        const key = `${model.name}\n${model.digest}`
        if (listed.has(key)) {
          const known = listed.get(key)
          next.set(key, known)
          return known
        }
        try {
          const capabilities = await show(model.name)
          next.set(key, capabilities)
          return capabilities
        } catch (err) {
          fastify.log.warn(
            { model: model.name, err: (err as Error).message },
            'Ollama did not say what the model can do; its grounded alias is listed',
          )
          return undefined
        }
      }),
    )
    listed = next
    return answers.map(completes)
  }

  /**
   * Refuses, in Ollama's words, a chat or generate with a model that cannot complete (asked
   * before any retrieval); a model Ollama does not have is its 404.
   */
  async function requireCompletion(
    model: string,
    endpoint: 'chat' | 'generate',
    signal: AbortSignal,
  ): Promise<void> {
    let known = byName.get(model)
    if (known === undefined || known.until <= Date.now()) {
      known = { value: await show(model, signal), until: Date.now() + BY_NAME_TTL_MS }
      byName.set(model, known)
    }
    if (!completes(known.value)) {
      throw new AppError(400, ErrorCode.validation, `"${model}" does not support ${endpoint}`)
    }
  }

  return { canChatListed, requireCompletion }
}

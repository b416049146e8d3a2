import {
  claimEmbedModel,
  configuredEmbedSetup,
  defaultEmbedPrefixes,
  EMBED_CLAIM_MS,
  type EmbedSetup,
  embeddingInForce,
  embedModelsKey,
  embedPrefixes,
  loadWorkerConfig,
  sameEmbedSetup,
  withdrawEmbedModel,
} from '@confluence-bot/shared'
import { Redis } from 'ioredis'
import t from 'tap'
import { startRedis } from '../helpers/redis.ts'

const REPRESENT = 'Represent this sentence for searching relevant passages: '

t.test('each recommended model gets the prefixes its card asks for', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['nomic-embed-text', 'search_query: ', 'search_document: '],
    ['nomic-embed-text:v1.5', 'search_query: ', 'search_document: '],
    ['Registry.Ollama.AI/library/Nomic-Embed-Text:LATEST', 'search_query: ', 'search_document: '],
    ['hf.co/nomic-ai/nomic-embed-text-v1.5-GGUF:Q8_0', 'search_query: ', 'search_document: '],
    ['nomic-embed-text-v2-moe', 'search_query: ', 'search_document: '],
    ['jeffh/intfloat-multilingual-e5-large:f16', 'query: ', 'passage: '],
    ['zylonai/multilingual-e5-large', 'query: ', 'passage: '],
    ['e5-small-v2', 'query: ', 'passage: '],
    ['mxbai-embed-large', REPRESENT, ''],
    ['mxbai-embed-large:335m', REPRESENT, ''],
    ['snowflake-arctic-embed', REPRESENT, ''],
    ['snowflake-arctic-embed:137m-m-long', REPRESENT, ''],
    ['snowflake-arctic-embed2', 'query: ', ''],
    ['someone/snowflake-arctic-embed-l-v2.0', 'query: ', ''],
    ['bge-m3', '', ''],
    ['all-minilm:l6-v2', '', ''],
    // Instruction-tuned E5 variants take a task instruction, not `query: `: left to the operator.
    ['multilingual-e5-large-instruct', '', ''],
    ['e5-mistral-7b-instruct', '', ''],
    ['unknown-embedder', '', ''],
  ]
  for (const [model, query, document] of cases) {
    t.same(defaultEmbedPrefixes(model), { query, document }, model)
  }
  // Callers may change what they get without changing the table of defaults.
  const mine = defaultEmbedPrefixes('nomic-embed-text')
  mine.query = 'changed'
  t.equal(defaultEmbedPrefixes('nomic-embed-text').query, 'search_query: ')
  t.same(defaultEmbedPrefixes('bge-m3'), defaultEmbedPrefixes('all-minilm'))
})

t.test(
  'settings: unset is the model default, `none` is no prefix, anything else as written',
  async (t) => {
    const of = (EMBED_MODEL: string, EMBED_QUERY_PREFIX = '', EMBED_DOCUMENT_PREFIX = '') =>
      embedPrefixes({ EMBED_MODEL, EMBED_QUERY_PREFIX, EMBED_DOCUMENT_PREFIX })
    t.same(of('nomic-embed-text'), { query: 'search_query: ', document: 'search_document: ' })
    t.same(of('nomic-embed-text', 'none', 'none'), { query: '', document: '' })
    t.same(of('nomic-embed-text', 'none'), { query: '', document: 'search_document: ' })
    t.same(of('bge-m3', 'q: ', 'd: '), { query: 'q: ', document: 'd: ' })
    t.same(of('bge-m3', 'none', 'none'), { query: '', document: '' })
    // Through the real config loader: the defaults of the schema reach the same answer.
    const config = loadWorkerConfig({ EMBED_MODEL: 'multilingual-e5-large' })
    t.same(embedPrefixes(config), { query: 'query: ', document: 'passage: ' })
    t.same(configuredEmbedSetup(config), {
      model: 'multilingual-e5-large',
      documentPrefix: 'passage: ',
      queryPrefix: 'query: ',
    })
    const custom = loadWorkerConfig({ EMBED_QUERY_PREFIX: 'none', EMBED_DOCUMENT_PREFIX: 'doc: ' })
    t.same(configuredEmbedSetup(custom), {
      model: 'nomic-embed-text',
      documentPrefix: 'doc: ',
      queryPrefix: '',
    })
  },
)

t.test('setups compare model names as Ollama reads them and prefixes exactly', async (t) => {
  const a: EmbedSetup = { model: 'embed', documentPrefix: 'd: ', queryPrefix: 'q: ' }
  t.ok(sameEmbedSetup(a, { ...a, model: 'embed:latest' }))
  t.notOk(sameEmbedSetup(a, { ...a, model: 'other' }))
  t.notOk(sameEmbedSetup(a, { ...a, documentPrefix: '' }))
  t.notOk(sameEmbedSetup(a, { ...a, queryPrefix: 'q:' }))
})

t.test('the table setup holds while a live worker names all of it', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const client = new Redis(redis.url)
  t.teardown(() => client.quit())
  const old: EmbedSetup = { model: 'embed', documentPrefix: '', queryPrefix: '' }
  const next: EmbedSetup = { model: 'embed', documentPrefix: 'd: ', queryPrefix: 'q: ' }

  t.same(await embeddingInForce(client, null, next), next, 'no table setup: the configured one')
  t.same(await embeddingInForce(client, old, next), next, 'nobody names the table setup')

  // A worker configured like the table (prefixes with newlines and quotes survive the member).
  const odd: EmbedSetup = { model: 'embed', documentPrefix: 'a\n"b"', queryPrefix: '\\' }
  await claimEmbedModel(client, 'w1', odd)
  t.same(await embeddingInForce(client, odd, next), odd, 'a live worker of the table setup')
  t.same(
    await embeddingInForce(client, { ...odd, model: 'embed:latest' }, next),
    { ...odd, model: 'embed:latest' },
    'model names compare as Ollama reads them',
  )
  t.same(
    await embeddingInForce(client, { ...odd, queryPrefix: '' }, next),
    next,
    'a worker of the same model but another query prefix does not hold it',
  )
  await withdrawEmbedModel(client, 'w1', odd)
  t.same(await embeddingInForce(client, odd, next), next, 'withdrawn')

  // A worker from before prefixes existed claims its model alone: it embeds without prefixes.
  await client.zadd(embedModelsKey, Date.now() + EMBED_CLAIM_MS, 'old-pod\nembed')
  t.same(await embeddingInForce(client, old, next), old, 'an old worker holds a prefix-less table')
  t.same(
    await embeddingInForce(client, { ...old, documentPrefix: 'd: ' }, next),
    next,
    'but not a table whose vectors carry a prefix',
  )

  // A claim that lapsed holds nothing.
  await client.del(embedModelsKey)
  await claimEmbedModel(client, 'w2', old, Date.now() - EMBED_CLAIM_MS)
  t.same(await embeddingInForce(client, old, next), next, 'a lapsed claim')
})

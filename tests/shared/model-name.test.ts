import { ollamaModelName, sameEmbedModel } from '@confluence-bot/shared'
import t from 'tap'

t.test('model names are read as Ollama reads them', async (t) => {
  const full = 'registry.ollama.ai/library/nomic-embed-text:latest'
  for (const name of [
    'nomic-embed-text',
    'nomic-embed-text:latest',
    'nomic-embed-text:',
    'library/nomic-embed-text',
    'Registry.Ollama.AI/library/Nomic-Embed-Text:LATEST',
    'https://registry.ollama.ai/library/nomic-embed-text',
  ]) {
    t.equal(ollamaModelName(name), full, name)
  }
  t.equal(ollamaModelName('localhost:5000/team/embed'), 'localhost:5000/team/embed:latest')
  t.equal(ollamaModelName('team/embed:v2'), 'registry.ollama.ai/team/embed:v2')
  t.ok(sameEmbedModel('embed', 'embed:latest'))
  t.notOk(sameEmbedModel('embed', 'embed:v2'))
  t.notOk(sameEmbedModel('embed', 'team/embed'))
})

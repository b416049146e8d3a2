import { fetchModels } from './models/fetch.ts'

// The Ollama pod's first init container (k8s/base/ollama): downloads the GGUFs MODEL_SOURCES
// serves over http(s) so that the next one, on the stock ollama image, needs no network tool.

const env = process.env
try {
  await fetchModels(
    {
      models: [env.CHAT_MODEL ?? '', env.EMBED_MODEL ?? ''].filter((name) => name !== ''),
      sources: env.MODEL_SOURCES ?? '',
      downloadDir: env.MODEL_DOWNLOAD_DIR ?? '/downloads',
      modelsDir: env.OLLAMA_MODELS ?? '/root/.ollama/models',
    },
    (line) => process.stdout.write(`${line}\n`),
  )
} catch (err) {
  process.stderr.write(`fetch-models: ${(err as Error).message}\n`)
  process.exitCode = 1
}

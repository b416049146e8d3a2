import { loadModelFetchSettings } from '@confluence-bot/shared'
import { fetchModels } from './models/fetch.ts'

// The Ollama pod's first init container (k8s/components/model-downloads): downloads the GGUFs
// MODEL_SOURCES serves over http(s) so that the next one, on the stock ollama image, needs no
// network tool.

try {
  await fetchModels(loadModelFetchSettings(), (line) => process.stdout.write(`${line}\n`))
} catch (err) {
  process.stderr.write(`fetch-models: ${(err as Error).message}\n`)
  process.exitCode = 1
}

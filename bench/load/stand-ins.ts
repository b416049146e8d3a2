import { startConfluenceStandIn } from '../../tests/helpers/confluence-stand-in.ts'
import { startOllamaStandIn } from '../../tests/helpers/ollama-stand-in.ts'
import { buildPage } from '../convert/pages.ts'

// The load benchmark's upstreams, in a process of their own: the Ollama stand-in (paced token
// streams, query and page embeddings) and the Confluence stand-in (the spaces to sync). In the
// benchmark's process they would share its event loop with the load generator and the probes,
// and every figure would include their work. Started by bench/load/index.ts over IPC: it sends
// the two URLs once listening and exits when its parent goes away.

export type StandInsSpec = {
  tokens: string[]
  tokenDelayMs: number
  spaces: Array<{ key: string; pages: number; firstId: number }>
}
export type StandInsReady = { ollama: string; confluence: string }

if (!process.send) {
  process.stderr.write('stand-ins.ts is started by bench/load/index.ts\n')
  process.exit(2)
}
process.on('disconnect', () => process.exit(0))

const spec = JSON.parse(process.argv[2] ?? '{}') as StandInsSpec
const bodies = Array.from({ length: 20 }, (_, i) => buildPage(i))
const pages = spec.spaces.flatMap(({ key, pages, firstId }) =>
  Array.from({ length: pages }, (_, i) => ({
    id: String(firstId + i),
    title: `${key} runbook ${i + 1}`,
    spaceKey: key,
    parentId: i === 0 ? undefined : String(firstId + Math.floor((i - 1) / 8)),
    version: 1,
    storage: bodies[i % 20] as string,
  })),
)
const ollama = await startOllamaStandIn({
  embedDimension: 768,
  tokens: spec.tokens,
  tokenDelayMs: spec.tokenDelayMs,
})
const confluence = await startConfluenceStandIn({ pages, pageSize: 250 })
// Both keep every request for tests; here those lists would only grow.
setInterval(() => {
  ollama.requests.length = 0
  ollama.aborted.length = 0
  confluence.requests.length = 0
}, 1000).unref()
process.send({ ollama: ollama.url, confluence: confluence.baseUrl } satisfies StandInsReady)

import { createServer, type Socket } from 'node:net'
import { type OllamaStandIn, type StandInOptions, startOllamaStandIn } from './ollama-stand-in.ts'

type Teardown = { teardown(fn: () => unknown): void }

/** A stand-in Ollama for one test, closed when it ends. */
export async function standIn(
  t: Teardown,
  options: Partial<StandInOptions> = {},
): Promise<OllamaStandIn> {
  const server = await startOllamaStandIn(options)
  t.teardown(() => server.close())
  return server
}

/**
 * A server that accepts connections and never answers (a hung Ollama, Redis…), for one test: its
 * port. Its connections are cut when the test ends.
 */
export async function silentPort(t: Teardown): Promise<number> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  return (server.address() as { port: number }).port
}

/** An "Ollama" that accepts connections and never answers: its URL. */
export const silentOllama = async (t: Teardown) => `http://127.0.0.1:${await silentPort(t)}`

/** Splits an NDJSON body into parsed objects, checking every line is complete JSON. */
export function ndjson(text: string): Array<Record<string, unknown>> {
  if (!text.endsWith('\n')) throw new Error(`NDJSON body does not end with a newline: ${text}`)
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}

/** A tool definition as Ollama's clients send it (`tools` on chat). */
export const WEATHER_TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'The weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } } },
    },
  },
]

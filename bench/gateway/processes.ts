import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'

// Parent side of the benchmark's server processes: start one (ready once it reports its URL),
// read its CPU time and request count, stop it. Every child started here is killed when this
// process exits, however it exits (normal end, error, Ctrl-C, SIGTERM), and a child exits by
// itself when its IPC channel to this process closes (e.g. this process was SIGKILLed).

export type ServerSpec =
  | { role: 'upstream' }
  | { role: 'proxy'; upstream: string }
  | {
      role: 'gateway'
      upstream: string
      logLevel: string
      lancedbUri: string
      /** More settings for the api (other benchmarks: Redis, keys, the import directory). */
      env?: Record<string, string>
    }

export type ToChild = { type: 'stats'; id: number } | { type: 'stop' }

export type FromChild =
  | { type: 'ready'; url: string }
  | { type: 'stats'; id: number; cpuMicros: number; served: number }

export type Stats = { cpuMicros: number; served: number }

export type ServerProcess = {
  name: string
  url: string
  pid: number
  stats(): Promise<Stats>
  stop(): Promise<void>
}

export type StartOptions = {
  /** Where the child's stdout goes (a file descriptor, e.g. the gateway's log file). */
  stdout?: number | 'ignore' | 'inherit'
  /** Extra Node flags, e.g. `--cpu-prof`. */
  execArgv?: string[]
}

const entry = fileURLToPath(new URL('./server-process.ts', import.meta.url))
const children = new Set<ChildProcess>()
const READY_TIMEOUT_MS = 30_000
const STATS_TIMEOUT_MS = 5_000
const STOP_TIMEOUT_MS = 15_000

function killAll(): void {
  for (const child of children) child.kill('SIGKILL')
  children.clear()
}

let cleanupInstalled = false

/** From the first child on: kill the children on exit and on Ctrl-C / SIGTERM / SIGHUP. */
function installCleanup(): void {
  if (cleanupInstalled) return
  cleanupInstalled = true
  process.on('exit', killAll)
  // A handler that stays: Ctrl-C reaches this process from the terminal and again from
  // bench/run.ts, and a second signal must not kill the process before the children are gone.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (children.size > 0) process.stderr.write(`\n${signal}: stopping the benchmark's servers\n`)
      killAll()
      process.exit(signal === 'SIGINT' ? 130 : 143)
    })
  }
}

const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null

export async function startServer(
  name: string,
  spec: ServerSpec,
  options: StartOptions = {},
): Promise<ServerProcess> {
  installCleanup()
  const child = fork(entry, [JSON.stringify(spec)], {
    execArgv: ['--conditions=@confluence-bot/source', ...(options.execArgv ?? [])],
    stdio: ['ignore', options.stdout ?? 'ignore', 'inherit', 'ipc'],
  })
  children.add(child)
  let stopping = false
  // Sending to a child that died emits 'error' on it; the callers below get the error instead.
  child.on('error', () => {})
  child.once('exit', (code, signal) => {
    children.delete(child)
    if (!stopping)
      process.stderr.write(`${name} exited unexpectedly (${signal ?? `code ${code}`})\n`)
  })

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => fail(new Error(`${name}: not ready after ${READY_TIMEOUT_MS} ms`)),
      READY_TIMEOUT_MS,
    )
    const onMessage = (message: FromChild) => {
      if (message.type !== 'ready') return
      cleanup()
      resolve(message.url)
    }
    const onExit = (code: number | null, signal: string | null) =>
      fail(new Error(`${name}: exited before it was ready (${signal ?? `code ${code}`})`))
    const cleanup = () => {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
    }
    const fail = (err: Error) => {
      cleanup()
      child.kill('SIGKILL')
      reject(err)
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })

  let nextId = 0
  return {
    name,
    url,
    pid: child.pid ?? -1,
    stats() {
      const id = nextId++
      return new Promise<Stats>((resolve, reject) => {
        const fail = (err: Error) => {
          clearTimeout(timer)
          child.off('message', onMessage)
          reject(err)
        }
        const timer = setTimeout(
          () => fail(new Error(`${name}: no stats within ${STATS_TIMEOUT_MS} ms`)),
          STATS_TIMEOUT_MS,
        )
        const onMessage = (message: FromChild) => {
          if (message.type !== 'stats' || message.id !== id) return
          clearTimeout(timer)
          child.off('message', onMessage)
          resolve({ cpuMicros: message.cpuMicros, served: message.served })
        }
        if (exited(child)) return fail(new Error(`${name} is not running`))
        child.on('message', onMessage)
        child.send({ type: 'stats', id } satisfies ToChild, (err) => {
          if (err) fail(new Error(`${name} is not running (${err.message})`))
        })
      })
    },
    async stop() {
      stopping = true
      if (exited(child)) return
      const done = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
      // If the channel is already closed, the child is on its way out anyway.
      child.send({ type: 'stop' } satisfies ToChild, (err) => {
        if (err) child.kill('SIGKILL')
      })
      await done
      clearTimeout(timer)
    },
  }
}

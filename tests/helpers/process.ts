import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))

type Teardown = { teardown(fn: () => unknown): void }

export type Service = {
  child: ChildProcess
  /** Everything written so far to stdout and stderr. */
  output(): string
  /** Resolves with the first log line matching `pattern`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** A child's environment: only PATH, tap's coverage directory and what the test sets. */
const childEnv = (env: Record<string, string>) => ({
  PATH: process.env.PATH ?? '',
  NODE_V8_COVERAGE: process.env.NODE_V8_COVERAGE ?? '',
  ...env,
})

const SOURCE = '--conditions=@confluence-bot/source'

export type Run = { code: number | null; stdout: string; stderr: string }

/**
 * Runs a script once on this Node with the source condition, as `pnpm` does; input on stdin.
 * `onStderr` sees its stderr so far each time more arrives.
 */
export function runScript(
  entry: string,
  args: string[],
  options: {
    input?: string
    env?: Record<string, string>
    onStderr?: (stderr: string) => void
  } = {},
): Promise<Run> {
  const child = spawn(process.execPath, [SOURCE, entry, ...args], {
    cwd: REPO_ROOT,
    env: childEnv(options.env ?? {}),
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
    options.onStderr?.(stderr)
  })
  child.stdin.end(options.input)
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** Runs a service entry point on this Node with the source condition, as `pnpm start` does. */
export function runService(t: Teardown, entry: string, env: Record<string, string>): Service {
  const child = spawn(process.execPath, [SOURCE, entry], {
    cwd: REPO_ROOT,
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  const waiters: Array<() => void> = []
  const onData = (chunk: Buffer) => {
    out += chunk.toString()
    for (const w of waiters.splice(0)) w()
  }
  child.stdout?.on('data', onData)
  child.stderr?.on('data', onData)
  const exit = once(child, 'exit').then(([code, signal]) => ({ code, signal }))
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return {
    child,
    output: () => out,
    exit,
    waitFor(pattern, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for ${pattern}; output:\n${out}`)),
          timeoutMs,
        )
        const check = () => {
          const line = out.split('\n').find((l) => pattern.test(l))
          if (line !== undefined) {
            clearTimeout(timer)
            resolve(line)
          } else if (child.exitCode !== null) {
            clearTimeout(timer)
            reject(new Error(`exited before ${pattern}; output:\n${out}`))
          } else {
            waiters.push(check)
          }
        }
        check()
      })
    },
  }
}

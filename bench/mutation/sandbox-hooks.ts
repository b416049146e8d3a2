import { existsSync, realpathSync } from 'node:fs'
import { isBuiltin, type ResolveHook, register } from 'node:module'
import { dirname, join, sep } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { isMainThread } from 'node:worker_threads'

// Loaded with `--import` (through NODE_OPTIONS, so processes the tests start get it too) into every
// process of a `pnpm bench mutation` run. Stryker copies the repo into
// `.stryker-tmp/sandbox-*/` and mutates the copy, but links only the root node_modules, and that
// one's workspace links (`@confluence-bot/*` → ../../services/…) and the packages' own
// node_modules (not copied) lead back to the untouched tree. This resolve hook keeps a process
// that runs inside a sandbox inside it: a module resolved to a repo source file is read from the
// sandbox's copy, and a bare import the sandbox cannot resolve (a package's own dependency) is
// resolved from the original file's place. Outside a sandbox it does nothing.
//
// The hook runs on the loader thread (module.register), chained with tap's mock loader
// (t.mockImport), which also lives there: an in-thread hook (module.registerHooks) would block
// the main thread on a resolve while the mock loader waits on the main thread for its mocks.

const SANDBOX_ENV = 'CONFLUENCE_BOT_MUTATION_SANDBOX'

function sandboxDir(): string | undefined {
  const known = process.env[SANDBOX_ENV]
  if (known) return known
  const cwd = process.cwd()
  const at = cwd.lastIndexOf(`${sep}.stryker-tmp${sep}sandbox-`)
  if (at < 0) return undefined
  const rest = cwd.slice(at + 1).split(sep)
  const dir = join(cwd.slice(0, at), rest[0] ?? '', rest[1] ?? '')
  // Child processes started with another working directory still know their sandbox.
  process.env[SANDBOX_ENV] = dir
  return dir
}

/** Set on the loader thread by `initialize`. */
let sandbox: string | undefined
let originalPrefix = ''
let sandboxPrefix = ''
let original = ''

export function initialize(data: { sandbox: string }) {
  sandbox = data.sandbox
  original = dirname(realpathSync(join(sandbox, 'node_modules')))
  originalPrefix = `${original}${sep}`
  sandboxPrefix = `${sandbox}${sep}`
}

function intoSandbox(url: string): string {
  if (sandbox === undefined || !url.startsWith('file:')) return url
  const path = fileURLToPath(url)
  if (!path.startsWith(originalPrefix)) return url
  const inside = path.slice(originalPrefix.length)
  if (inside.split(sep).includes('node_modules') || inside.startsWith(`.stryker-tmp${sep}`)) {
    return url
  }
  const copy = join(sandbox, inside)
  return existsSync(copy) ? pathToFileURL(copy).href : url
}

function outOfSandbox(url: string | undefined): string | undefined {
  if (url === undefined || !url.startsWith('file:')) return url
  const path = fileURLToPath(url)
  if (!path.startsWith(sandboxPrefix)) return url
  return pathToFileURL(join(original, path.slice(sandboxPrefix.length))).href
}

export const resolve: ResolveHook = async (specifier, context, nextResolve) => {
  if (sandbox === undefined || isBuiltin(specifier)) return nextResolve(specifier, context)
  let result: Awaited<ReturnType<typeof nextResolve>>
  try {
    result = await nextResolve(specifier, context)
  } catch (error) {
    const parentURL = outOfSandbox(context.parentURL)
    if (parentURL === context.parentURL) throw error
    // Not in the sandbox (a workspace package's own dependency, or a path into its
    // node_modules): resolve it where the importing file really lives.
    const fromOriginal = specifier.startsWith('.') ? new URL(specifier, parentURL).href : specifier
    result = await nextResolve(fromOriginal, { ...context, parentURL })
  }
  return { ...result, url: intoSandbox(result.url) }
}

// Given both on the command line and in NODE_OPTIONS, it registers once.
const registered = Symbol.for('confluence-bot.mutation-sandbox-hooks')
const globals = globalThis as { [registered]?: true }
if (isMainThread && !globals[registered]) {
  const dir = sandboxDir()
  if (dir !== undefined) {
    globals[registered] = true
    register(import.meta.url, { data: { sandbox: dir } })
  }
}

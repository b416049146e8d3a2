import { existsSync, realpathSync } from 'node:fs'
import { registerHooks } from 'node:module'
import { dirname, join, sep } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

// Loaded with `--import` (through NODE_OPTIONS, so processes the tests start get it too) into every
// process of a `pnpm bench mutation` run. Stryker copies the repo into
// `.stryker-tmp/sandbox-*/` and mutates the copy, but links only the root node_modules, and that
// one's workspace links (`@confluence-bot/*` → ../../services/…) and the packages' own
// node_modules (not copied) lead back to the untouched tree. This resolve hook keeps a process
// that runs inside a sandbox inside it: a module resolved to a repo source file is read from the
// sandbox's copy, and a bare import the sandbox cannot resolve (a package's own dependency) is
// resolved from the original file's place. Outside a sandbox it does nothing.

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

// Given both on the command line and in NODE_OPTIONS, it registers once.
const registered = Symbol.for('confluence-bot.mutation-sandbox-hooks')
const globals = globalThis as { [registered]?: true }
const sandbox = globals[registered] ? undefined : sandboxDir()
if (sandbox !== undefined) {
  globals[registered] = true
  const original = dirname(realpathSync(join(sandbox, 'node_modules')))
  const originalPrefix = `${original}${sep}`
  const sandboxPrefix = `${sandbox}${sep}`

  const intoSandbox = (url: string): string => {
    if (!url.startsWith('file:')) return url
    const path = fileURLToPath(url)
    if (!path.startsWith(originalPrefix)) return url
    const inside = path.slice(originalPrefix.length)
    if (inside.split(sep).includes('node_modules') || inside.startsWith(`.stryker-tmp${sep}`)) {
      return url
    }
    const copy = join(sandbox, inside)
    return existsSync(copy) ? pathToFileURL(copy).href : url
  }
  const outOfSandbox = (url: string | undefined): string | undefined => {
    if (url === undefined || !url.startsWith('file:')) return url
    const path = fileURLToPath(url)
    if (!path.startsWith(sandboxPrefix)) return url
    return pathToFileURL(join(original, path.slice(sandboxPrefix.length))).href
  }

  registerHooks({
    resolve(specifier, context, nextResolve) {
      let result: ReturnType<typeof nextResolve>
      try {
        result = nextResolve(specifier, context)
      } catch (error) {
        const parentURL = outOfSandbox(context.parentURL)
        if (parentURL === context.parentURL) throw error
        // Not in the sandbox (a workspace package's own dependency, or a path into its
        // node_modules): resolve it where the importing file really lives.
        const fromOriginal = specifier.startsWith('.')
          ? new URL(specifier, parentURL).href
          : specifier
        result = nextResolve(fromOriginal, { ...context, parentURL })
      }
      return { ...result, url: intoSandbox(result.url) }
    },
  })
}

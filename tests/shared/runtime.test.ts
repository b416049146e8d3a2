import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import {
  WORKER_MALLOC_ARENA_MAX,
  WORKER_NODE_OPTIONS,
  workerProcessEnv,
} from '@confluence-bot/shared'
import t from 'tap'

const run = promisify(execFile)

t.test(
  'a worker process gets the memory settings, after which its own environment wins',
  async (t) => {
    t.same(workerProcessEnv({ PATH: '/bin' }), {
      PATH: '/bin',
      NODE_OPTIONS: WORKER_NODE_OPTIONS,
      MALLOC_ARENA_MAX: WORKER_MALLOC_ARENA_MAX,
    })
    const own = workerProcessEnv({
      NODE_OPTIONS: ' --max-semi-space-size=16 ',
      MALLOC_ARENA_MAX: '4',
    })
    t.equal(own.NODE_OPTIONS, `${WORKER_NODE_OPTIONS} --max-semi-space-size=16`)
    t.equal(own.MALLOC_ARENA_MAX, '4')
    t.equal(workerProcessEnv({ NODE_OPTIONS: '  ' }).NODE_OPTIONS, WORKER_NODE_OPTIONS)
    t.equal(workerProcessEnv({ MALLOC_ARENA_MAX: '' }).MALLOC_ARENA_MAX, WORKER_MALLOC_ARENA_MAX)
  },
)

t.test(
  'Node really takes the flag: the young generation, hence the heap limit, is smaller',
  async (t) => {
    const limitMb = async (env: Record<string, string>) => {
      const script =
        'process.stdout.write(String(require("v8").getHeapStatistics().heap_size_limit))'
      const { stdout } = await run(process.execPath, ['-e', script], { env })
      return Number(stdout) / 2 ** 20
    }
    const plain = await limitMb({ PATH: process.env.PATH ?? '' })
    const worker = await limitMb(workerProcessEnv({ PATH: process.env.PATH ?? '' }))
    t.ok(worker < plain, `${worker} MB < ${plain} MB`)
    // A deployment's own setting comes last and overrides it.
    const overridden = await limitMb(
      workerProcessEnv({ PATH: process.env.PATH ?? '', NODE_OPTIONS: '--max-semi-space-size=32' }),
    )
    t.ok(overridden > worker, `${overridden} MB > ${worker} MB`)
  },
)

t.test("the worker package's start script sets the same memory settings", async (t) => {
  const { readFile } = await import('node:fs/promises')
  const manifest = JSON.parse(
    await readFile(new URL('../../services/worker/package.json', import.meta.url), 'utf8'),
  ) as { scripts: { start: string } }
  // Run the script as npm would (sh), with `node dist/main.js` printing what the worker gets.
  const probe =
    'node -e "process.stdout.write(JSON.stringify([process.env.NODE_OPTIONS,process.env.MALLOC_ARENA_MAX]))"'
  const script = manifest.scripts.start.replace('node dist/main.js', probe)
  t.not(script, manifest.scripts.start, 'the script starts dist/main.js')
  // Settings of the caller's are exported inside the shell: tap rewrites the NODE_OPTIONS a test
  // hands to a child (adding its coverage hook), which would hide what the script does.
  const settings = async (own: string) =>
    JSON.parse((await run('sh', ['-c', `${own}${script}`])).stdout) as [string, string]
  const [options, arenas] = await settings('unset NODE_OPTIONS MALLOC_ARENA_MAX; ')
  t.equal(options.trim(), WORKER_NODE_OPTIONS)
  t.equal(arenas, WORKER_MALLOC_ARENA_MAX)
  const [ownOptions, ownArenas] = await settings(
    'export NODE_OPTIONS=--max-semi-space-size=16 MALLOC_ARENA_MAX=4; ',
  )
  t.equal(ownOptions, `${WORKER_NODE_OPTIONS} --max-semi-space-size=16`, 'its own come after')
  t.equal(ownArenas, '4')
})

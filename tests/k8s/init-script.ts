import { execFile } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

// Runs the Ollama init container's script (k8s/base/ollama/init-models.sh) with `sh` against a
// stand-in `ollama` on PATH that records every call. The stand-in behaves like the CLI talking to
// a temporary server: `list` answers once `serve` is up, `show` succeeds for the models said to be
// on the volume, `pull` and `create` succeed unless told to fail, and `create` keeps a copy of the
// Modelfile it was given (after checking that its FROM file exists, as the real CLI does).

export type Stand = { present?: string[]; pullFails?: string[]; createFails?: string[] }

export type InitRun = {
  status: number | null
  /** The stand-in's calls, one line of argv each; `stopped` when the server was stopped. */
  calls: string[]
  stderr: string
  stdout: string
  /** Model name → the Modelfile `ollama create` received. */
  modelfiles: Record<string, string>
  dir: string
}

const STUB = `#!/bin/sh
echo "$*" >> "$STUB_DIR/calls"
listed() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }
case "$1" in
  serve) trap 'echo stopped >> "$STUB_DIR/calls"; exit 0' TERM; touch "$STUB_DIR/up"; while :; do sleep 0.05; done ;;
  # Waits a moment for a server still starting, so the script's 1 s retry is rarely needed.
  list) for i in 1 2 3 4 5 6 7 8 9 10; do [ -f "$STUB_DIR/up" ] && exit 0; sleep 0.05; done; exit 1 ;;
  show) listed "$STUB_PRESENT" "$2" && exit 0; echo "Error: model '$2' not found" >&2; exit 1 ;;
  pull) listed "$STUB_PULL_FAILS" "$2" && { echo "Error: pull failed" >&2; exit 1; }; exit 0 ;;
  create)
    # The script writes the FROM instruction first; later lines may be a template's own text.
    from=$(sed -n '1s/^FROM //p' "$4")
    [ -f "$from" ] || { echo "Error: no such file $from" >&2; exit 1; }
    cp "$4" "$STUB_DIR/modelfile-$2"
    listed "$STUB_CREATE_FAILS" "$2" && { echo "Error: invalid file magic" >&2; exit 1; }
    exit 0 ;;
esac
exit 2
`

/** A fresh directory with the stand-in `ollama` in `bin/`. */
export function stubDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ollama-init-'))
  mkdirSync(join(dir, 'bin'))
  writeFileSync(join(dir, 'bin', 'ollama'), STUB, { mode: 0o755 })
  writeFileSync(join(dir, 'calls'), '')
  return dir
}

/** Runs `sh script` with env (plus the stand-in on PATH); never rejects. */
export async function runInit(
  script: string,
  dir: string,
  env: Record<string, string>,
  stand: Stand = {},
): Promise<InitRun> {
  const result = await new Promise<{ status: number | null; stdout: string; stderr: string }>(
    (done) => {
      execFile(
        '/bin/sh',
        [script],
        {
          env: {
            MODEL_DOWNLOAD_DIR: join(dir, 'downloads'),
            ...env,
            // env.PATH, when given, replaces the machine's tools (to take curl and wget away).
            PATH: `${join(dir, 'bin')}:${env.PATH ?? process.env.PATH}`,
            STUB_DIR: dir,
            STUB_PRESENT: (stand.present ?? []).join(' '),
            STUB_PULL_FAILS: (stand.pullFails ?? []).join(' '),
            STUB_CREATE_FAILS: (stand.createFails ?? []).join(' '),
          },
          timeout: 20_000,
        },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : null) : 0
          done({ status: code, stdout, stderr })
        },
      )
    },
  )
  const calls = readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n').filter(Boolean)
  const modelfiles: Record<string, string> = {}
  for (const entry of readdirSync(dir)) {
    if (entry.startsWith('modelfile-')) {
      modelfiles[entry.slice('modelfile-'.length)] = readFileSync(join(dir, entry), 'utf8')
    }
  }
  return { ...result, calls, modelfiles, dir }
}

/** The calls that reach beyond the volume: pulls from the registry. */
export const pulls = (run: InitRun) => run.calls.filter((c) => c.startsWith('pull '))
export const creates = (run: InitRun) => run.calls.filter((c) => c.startsWith('create '))

export const downloadsLeft = (run: InitRun) =>
  existsSync(join(run.dir, 'downloads')) ? readdirSync(join(run.dir, 'downloads')) : []

/**
 * A PATH holding only the tools the script and the stand-in use, as in the stock ollama/ollama
 * image: no curl, no wget.
 */
export function stockTools(dir: string): string {
  const tools = join(dir, 'tools')
  mkdirSync(tools)
  for (const tool of [
    'cat',
    'cp',
    'cut',
    'grep',
    'mkdir',
    'mktemp',
    'mv',
    'rm',
    'sed',
    'sleep',
    'touch',
    'tr',
  ]) {
    const found = ['/usr/bin', '/bin'].map((d) => join(d, tool)).find((p) => existsSync(p))
    symlinkSync(found as string, join(tools, tool))
  }
  return tools
}

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '@confluence-bot/api'
import { type ApiConfig, type Env, loadApiConfig } from '@confluence-bot/shared'
import type { FastifyInstance } from 'fastify'

type Teardown = { teardown(fn: () => unknown): void }

export const READER_KEY = 'reader-key-0123456789abcdef'
export const ADMIN_KEY = 'admin-key-0123456789abcdef'
/** SECRETS_KEY of test apis and workers (source credentials are refused without one). */
export const TEST_SECRETS_KEY = Buffer.alloc(32, 7).toString('base64')

/** A temp directory removed when the test ends. */
export async function tempDir(t: Teardown, prefix = 'cnfl-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Validated API config for a test: silent logs, a temp LanceDB dir, then the overrides. */
export async function testConfig(t: Teardown, env: Env = {}): Promise<ApiConfig> {
  return loadApiConfig({
    LOG_LEVEL: 'silent',
    LANCEDB_URI: join(await tempDir(t, 'cnfl-lance-'), 'db'),
    // Nothing listens on port 1: a dependency a test did not start is simply unreachable.
    REDIS_URL: 'redis://127.0.0.1:1',
    OLLAMA_URL: 'http://127.0.0.1:1',
    OLLAMA_CONNECT_TIMEOUT_MS: '1000',
    // The gateway tests relay Ollama's answers as they are; grounded-answer tests turn it on.
    RAG_ENABLED: 'false',
    // The suite sends many requests with one key: rate limits are off unless a test sets them.
    RATE_LIMIT_PER_MINUTE: '0',
    // A busy test process must not shed requests: back-pressure is off unless a test sets it.
    PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0',
    PRESSURE_MAX_EVENT_LOOP_UTILIZATION: '0',
    SECRETS_KEY: TEST_SECRETS_KEY,
    ...env,
  })
}

/** Builds the app (not listening) and closes it when the test ends. */
export async function buildTestApp(t: Teardown, env: Env = {}): Promise<FastifyInstance> {
  const app = buildApp({ config: await testConfig(t, env) })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

/** Builds the app and listens on a free loopback port, for tests that need real HTTP. */
export async function listenTestApp(
  t: Teardown,
  env: Env = {},
): Promise<{ app: FastifyInstance; url: string }> {
  const app = await buildTestApp(t, env)
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, url }
}

export const bearer = (key: string) => ({ authorization: `Bearer ${key}` })

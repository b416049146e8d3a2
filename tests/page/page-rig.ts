import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { launchChromium } from '../helpers/browser.ts'
import { type GroundedRig, groundedRig } from '../helpers/grounded.ts'

// The chat page in real headless Chromium against a real api, worker, Redis and LanceDB (the
// grounded rig), the Ollama stand-in answering as a model that cites its excerpts.

type T = Parameters<typeof groundedRig>[0]
type Body = Record<string, unknown>

const messagesOf = (body: Body) => (body.messages ?? []) as Array<{ role: string; content: string }>

/** The rewrite of a follow-up into a standalone query (a short call before the answer). */
export const isRewrite = (body: Body) =>
  /standalone search query/.test(messagesOf(body)[0]?.content ?? '')

/** What the stand-in model answers a grounded question with: markdown citing excerpt 1. */
export const ANSWER_TOKENS = [
  'Roll back ',
  'the billing deployment ',
  'with Helm [1]:\n\n',
  '```sh\nhelm rollback billing 41\n```\n\n',
  '| Step | Command |\n|---|---|\n| history | `helm history billing` |\n\n',
  '- check the revision [1]\n',
  '- roll back [1]\n',
]
export const ANSWER_TEXT = ANSWER_TOKENS.join('')

/** Answers grounded questions with `tokens`, rewrites with the question itself. */
export function citingModel(tokens: () => string[] = () => ANSWER_TOKENS) {
  return (body: Body): string[] | undefined => {
    if (isRewrite(body)) return ['roll back the billing deployment']
    const last = messagesOf(body).at(-1)?.content ?? ''
    return /<excerpt-[0-9a-f]+ n="1">/.test(last) ? tokens() : undefined
  }
}

export type PageRig = GroundedRig & {
  browser: Browser
  /** A new tab in a fresh browser context (its own sessionStorage). */
  open(options?: {
    bypassCSP?: boolean
  }): Promise<{ context: BrowserContext; page: Page; errors: string[] }>
}

export async function pageRig(
  t: T,
  options: Parameters<typeof groundedRig>[1] = {},
): Promise<PageRig> {
  const rig = await groundedRig(t, options)
  rig.rig.ollama.options.respond = citingModel()
  const browser = await launchChromium(t)
  return {
    ...rig,
    browser,
    async open(options = {}) {
      const context = await browser.newContext({
        bypassCSP: options.bypassCSP === true,
        viewport: { width: 1280, height: 900 },
      })
      const page = await context.newPage()
      // What the page itself reports going wrong: a script error, a resource the CSP refused.
      const errors: string[] = []
      page.on('pageerror', (err) => errors.push(err.message))
      page.on('console', (message) => {
        // A 401 is how the page learns it needs a key (or that a key was wrong): no fault.
        if (message.type() === 'error' && !/status of 401/.test(message.text())) {
          errors.push(message.text())
        }
      })
      await page.goto(`${rig.url}/`)
      return { context, page, errors }
    },
  }
}

/** Signs in through the page's key form and waits for the chat to show. */
export async function signIn(page: Page, key: string): Promise<void> {
  await page.getByLabel('API key', { exact: true }).fill(key)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.locator('#app').waitFor({ state: 'visible', timeout: 30_000 })
}

/** Asks through the form; returns once the answer is complete (the status says so). */
export async function askAndWait(page: Page, question: string): Promise<void> {
  await page.getByLabel('Your question').fill(question)
  await page.getByRole('button', { name: 'Ask', exact: true }).click()
  await page.locator('#status', { hasText: /Answer complete/ }).waitFor({ timeout: 30_000 })
}

const axeSource = async () =>
  readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

/**
 * axe-core's violations on the page as it is (WCAG 2.x A/AA and best practices). axe is
 * evaluated through the DevTools protocol, which the page's CSP does not govern.
 */
export async function axeViolations(page: Page) {
  await page.evaluate(await axeSource())
  return page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(): Promise<{ violations: unknown[] }> } })
      .axe
    const result = await axe.run()
    return result.violations as Array<{ id: string; help: string; nodes: Array<{ html: string }> }>
  })
}

/** Where screenshots go: TEST_ARTIFACTS_DIR, else confluence-bot-artifacts in the temp dir. */
export async function saveArtifact(name: string, data: Buffer): Promise<string> {
  const dir = process.env.TEST_ARTIFACTS_DIR ?? join(tmpdir(), 'confluence-bot-artifacts')
  await mkdir(dir, { recursive: true })
  const path = join(dir, name)
  await writeFile(path, data)
  return path
}

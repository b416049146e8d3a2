import { existsSync } from 'node:fs'
import { type Browser, chromium } from 'playwright-core'

type Teardown = { teardown(fn: () => unknown): void }

// Real headless Chromium for the pages a browser sees: Debian's `chromium` driven by
// playwright-core (no downloaded browser). Closed with the test.

export const CHROMIUM = '/usr/bin/chromium'

/** A `skip` reason when Chromium is missing, else false. */
export const noChromium =
  !existsSync(CHROMIUM) && 'Debian chromium is not installed (./confluence-bot test installs it)'

export async function launchChromium(t: Teardown): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
  t.teardown(() => browser.close())
  return browser
}

import type { Page } from 'playwright-core'
import t from 'tap'
import { READER_KEY } from '../helpers/api.ts'
import { noChromium } from '../helpers/browser.ts'
import { ENG_KEY } from '../helpers/grounded.ts'
import { pageRig } from './page-rig.ts'

// The main flow with the keyboard alone (typing, Tab, Shift+Tab, Enter, Escape): sign in, ask,
// open a citation; the key kept for the browser session only; a reader limited to one space.

/** What has the focus: its id, or its tag and class, and its text. */
const focused = (page: Page) =>
  page.evaluate(() => {
    const el = document.activeElement as HTMLElement
    return {
      id: el.id,
      tag: el.tagName.toLowerCase(),
      className: el.className,
      text: (el.textContent ?? '').trim(),
      outline: getComputedStyle(el).outlineStyle,
    }
  })

/** Presses `key` until the focused element matches, at most `limit` times. */
async function pressUntil(
  page: Page,
  key: string,
  matches: (f: Awaited<ReturnType<typeof focused>>) => boolean,
  limit = 40,
) {
  for (let i = 0; i < limit; i++) {
    await page.keyboard.press(key)
    const now = await focused(page)
    if (matches(now)) return now
  }
  throw new Error(`${key} never reached the element`)
}

t.test('keyboard only: sign in, ask, open a citation', { skip: noChromium }, async (t) => {
  const rig = await pageRig(t)
  const { context, page, errors } = await rig.open()
  await page.locator('#key:focus').waitFor()
  t.equal((await focused(page)).id, 'key', 'the key field has the focus at once')

  await page.keyboard.type('wrong-key-0123456789')
  await page.keyboard.press('Enter')
  await page.locator('#key-error', { hasText: 'That key was not accepted' }).waitFor()
  t.equal((await focused(page)).id, 'key', 'and keeps it after a wrong key')
  t.equal(await page.evaluate(() => sessionStorage.length), 0, 'a wrong key is not kept')

  await page.keyboard.type(READER_KEY)
  await page.keyboard.press('Enter')
  await page.locator('#question:focus').waitFor({ timeout: 30_000 })
  t.pass('signed in, the focus is in the question box')

  await page.keyboard.type('How do I roll back the billing deployment?')
  await page.keyboard.press('Enter')
  await page.locator('#status', { hasText: /Answer complete/ }).waitFor({ timeout: 30_000 })
  t.equal((await focused(page)).id, 'question', 'the focus stays for the next question')

  const cite = await pressUntil(page, 'Shift+Tab', (f) => f.className === 'cite')
  t.equal(cite.text, '1')
  t.not(cite.outline, 'none', 'the focused citation shows it')
  const href = await page.evaluate(() => (document.activeElement as HTMLAnchorElement).href)
  const [opened] = await Promise.all([context.waitForEvent('page'), page.keyboard.press('Enter')])
  t.equal(opened.url(), href, 'Enter opens the cited section')
  await opened.close()

  // Forward from the top (a reload, the conversation reopened from the address), the focus
  // meets the parts in reading order.
  await page.reload()
  await page.locator('.message.assistant a.cite').first().waitFor()
  const order: string[] = []
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab')
    const f = await focused(page)
    order.push(f.id || `${f.tag}.${f.className}`)
    if (f.id === 'send') break
  }
  const at = (name: string) => order.findIndex((o) => o.includes(name))
  const steps = [
    'new-conversation',
    'button.open-conversation',
    'space-ENG',
    'a.cite',
    'question',
    'send',
  ]
  for (const step of steps) t.ok(at(step) >= 0, `${step} is reached (${order.join(' → ')})`)
  t.same(
    steps.map(at),
    steps.map(at).toSorted((a, b) => a - b),
    'in the order they appear',
  )

  // The skip link takes the focus to the question, and leaves the address as it was.
  const address = page.url()
  await page.reload()
  await page.locator('.message.assistant a.cite').first().waitFor()
  await page.keyboard.press('Tab')
  t.equal((await focused(page)).className, 'skip')
  await page.keyboard.press('Enter')
  t.equal((await focused(page)).id, 'question', 'the skip link goes to the question')
  t.equal(page.url(), address, 'the conversation stays named in the address')

  // Escape stops an answer.
  rig.rig.ollama.options.tokenDelayMs = 500
  await page.locator('#question').focus()
  await page.keyboard.type('And how do I check it?')
  await page.keyboard.press('Enter')
  await page.locator('.message.assistant .answer', { hasText: 'Roll back' }).nth(1).waitFor()
  await page.keyboard.press('Escape')
  await page.locator('#status', { hasText: 'Stopped.' }).waitFor()
  rig.rig.ollama.options.tokenDelayMs = 0
  t.same(errors, [], 'the page reported no error')

  // The key lasts as long as the browser session: a reload keeps it, a new session asks again.
  await page.reload()
  await page.locator('#question').waitFor()
  t.equal(await page.locator('#key').isVisible(), false, 'asked once per session')
  const fresh = await rig.open()
  await fresh.page.locator('#key:focus').waitFor()
  t.pass('a new browser session asks for the key again')
  await page.getByRole('button', { name: 'Forget my key' }).press('Enter')
  await page.locator('#key:focus').waitFor()
  t.equal(await page.evaluate(() => sessionStorage.length), 0, 'forgotten')
  t.equal(await page.locator('.message, #history li').count(), 0, 'and nothing of it left shown')
})

t.test(
  'a reader limited to ENG sees ENG alone, and no admin part',
  { skip: noChromium },
  async (t) => {
    const rig = await pageRig(t)
    const { page } = await rig.open()
    await page.locator('#key').fill(ENG_KEY)
    await page.keyboard.press('Enter')
    await page.locator('#space-list label').first().waitFor({ timeout: 30_000 })
    t.same(await page.locator('#space-list label').allTextContents(), ['ENG (3 pages)'])
    t.match(await page.locator('#who').textContent(), /a reader of spaces ENG/)
    t.equal(await page.locator('#admin').isHidden(), true)
    await page.locator('#question').fill('Who is paged for a SEV1 incident on call?')
    await page.keyboard.press('Enter')
    await page.locator('#status', { hasText: /Answer complete/ }).waitFor({ timeout: 30_000 })
    for (const meta of await page.locator('.source-meta').allTextContents()) {
      t.match(meta, /Space ENG/, 'no OPS page among the sources')
    }

    // A key that stops being accepted mid-session (revoked): back to the form, saying why.
    await page.evaluate(() =>
      sessionStorage.setItem('confluence-bot.key', 'revoked-key-0123456789'),
    )
    await page.locator('#question').fill('And on weekends?')
    await page.keyboard.press('Enter')
    await page.locator('#key-error', { hasText: 'Your key is no longer accepted' }).waitFor()
    t.equal(await page.locator('#app').isHidden(), true)
    t.equal(await page.locator('.message').count(), 0, 'nothing of the session left shown')
    t.equal(await page.evaluate(() => sessionStorage.length), 0, 'the refused key is dropped')
  },
)

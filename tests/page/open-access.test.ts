import t from 'tap'
import { listenTestApp } from '../helpers/api.ts'
import { launchChromium, noChromium } from '../helpers/browser.ts'
import { startRedis } from '../helpers/redis.ts'
import { axeViolations } from './page-rig.ts'

// A fresh install with auth off: no key is asked, nothing is indexed and no source is
// registered yet, and the page says so instead of showing empty boxes.

t.test('auth off, nothing indexed yet', { skip: noChromium }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const { url } = await listenTestApp(t, { REDIS_URL: redis.url })
  const browser = await launchChromium(t)
  const page = await browser.newPage()
  await page.goto(`${url}/`)
  await page.locator('#app').waitFor({ timeout: 30_000 })
  t.equal(await page.locator('#sign-in').isHidden(), true, 'no key is asked')
  t.equal(await page.locator('#who').textContent(), 'Open access: this server asks for no key')
  t.equal(await page.locator('#sign-out').isHidden(), true, 'no key to forget')
  await page.locator('#sources-empty:not([hidden])').waitFor()
  t.pass('the admin part says no source is registered')
  await page.locator('#spaces-hint', { hasText: 'Nothing is indexed yet' }).waitFor()
  t.equal(await page.locator('#space-list input').count(), 0)
  t.equal(await page.locator('#history-empty').isVisible(), true, 'no conversation yet')
  await page.getByLabel('Your question').press('Enter')
  await page.locator('#status', { hasText: 'Type a question first.' }).waitFor()
  t.pass('an empty question is not sent')
  t.same(await axeViolations(page), [], 'the empty page passes axe')
})

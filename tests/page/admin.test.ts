import t from 'tap'
import { ADMIN_KEY } from '../helpers/api.ts'
import { noChromium } from '../helpers/browser.ts'
import { axeViolations, pageRig, signIn } from './page-rig.ts'

// An admin on the chat page: the sources, the state and progress of their last sync, a sync
// started with the button and followed until it ends, and the way to the queue dashboard.

t.test('the admin view starts a sync and shows its progress', { skip: noChromium }, async (t) => {
  const rig = await pageRig(t)
  const { page, errors } = await rig.open()
  await signIn(page, ADMIN_KEY)
  const row = page.locator(`#source-rows tr[data-source="${rig.sourceId}"]`)
  await row.waitFor({ timeout: 30_000 })
  t.match(await page.locator('#who').textContent(), /an admin of every space/)
  t.equal(await row.locator('th').textContent(), 'Test space')
  t.equal(await row.locator('td').first().textContent(), 'ENG, OPS')
  const state = row.locator('td.job-state')
  t.equal(await state.getAttribute('data-state'), 'completed', 'the first sync, done')
  t.match(await row.locator('td.job-progress').textContent(), /^5 found · 5 indexed · 0 unchanged$/)
  const dashboard = page.getByRole('link', { name: 'Open the queue dashboard' })
  t.equal(await dashboard.getAttribute('href'), '/admin/queues')
  t.same(await axeViolations(page), [], 'the admin view passes axe')

  // One page changed and a slow Confluence: the sync runs long enough to be seen running.
  const changed = rig.rig.confluence.options.pages[0] as { version: number; storage: string }
  changed.version = 2
  changed.storage += '<p>Check the release notes before a rollback.</p>'
  rig.rig.confluence.options.delayMs = 150

  await row.getByRole('button', { name: 'Sync now: Test space' }).click()
  await page.locator('#admin-status', { hasText: 'Sync of Test space started.' }).waitFor()
  await row
    .locator('td.job-state[data-state="waiting"], td.job-state[data-state="active"]')
    .waitFor({ timeout: 30_000 })
  t.match(await state.textContent(), /^(Waiting to start|Running)/, 'shown while it runs')
  await page
    .locator('#admin-status', { hasText: 'The sync of Test space completed' })
    .waitFor({ timeout: 60_000 })
  t.equal(await state.getAttribute('data-state'), 'completed')
  t.match(
    await row.locator('td.job-progress').textContent(),
    /^5 found · 1 indexed · 4 unchanged$/,
    'the changed page indexed again, the others left as they were',
  )
  t.same(errors, [], 'the page reported no error')
})

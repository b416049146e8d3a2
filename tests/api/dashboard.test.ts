import { ALL_QUEUES, QueueName, type SyncProgress } from '@confluence-bot/shared'
import type { Page } from 'playwright-core'
import t from 'tap'
import { ADMIN_KEY, bearer, buildTestApp, listenTestApp, READER_KEY } from '../helpers/api.ts'
import { launchChromium, noChromium } from '../helpers/browser.ts'
import { generatedSpace, ingestRig, registerRigSource, rigApiEnv } from '../helpers/ingest.ts'
import { startRedis } from '../helpers/redis.ts'

// The bull-board queue dashboard at /admin/queues: behind the admin key (HTTP Basic, any user
// name, the key as the password), and, in a real Chromium, showing every queue of the contract
// and the progress counters a real worker reported on real sync jobs.

const keys = { API_KEYS: READER_KEY, ADMIN_API_KEYS: ADMIN_KEY }
const admin = bearer(ADMIN_KEY)
const basic = (user: string, password: string) => ({
  authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
})

/** The counters of the open job's Progress tab, as the dashboard renders them. */
async function shownProgress(page: Page): Promise<Record<string, number>> {
  await page.getByRole('tab', { name: 'Progress' }).click()
  const panel = page.getByRole('tabpanel', { name: 'Progress' })
  await panel.getByText('converted', { exact: false }).waitFor()
  const text = (await panel.textContent()) ?? ''
  return Object.fromEntries(
    [...text.matchAll(/"?(\w+)"?\s*:\s*(-?\d+)/g)].map((m) => [m[1], Number(m[2])]),
  )
}

t.test('the dashboard lets in an admin key only, on every path under it', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const app = await buildTestApp(t, { ...keys, REDIS_URL: redis.url })
  // The page, its assets and the JSON API the page reads jobs from (job data included).
  const paths = [
    '/admin/queues',
    '/admin/queues/static/images/logo.svg',
    '/admin/queues/api/queues',
  ]
  for (const url of paths) {
    for (const [label, headers] of [
      ['no credentials', {}],
      ['a wrong key over Basic', basic('operator', 'not-the-admin-key-000')],
      ['Basic with an empty password', basic('operator', '')],
      ['the admin key as the user name', basic(ADMIN_KEY, '')],
    ] as const) {
      const res = await app.inject({ method: 'GET', url, headers })
      t.equal(res.statusCode, 401, `${url} with ${label}`)
      t.equal(res.json().error, 'unauthorized')
      t.match(
        String(res.headers['www-authenticate']),
        /Basic realm="confluence-bot"/,
        'the browser is asked for Basic credentials',
      )
    }
    const reader = await app.inject({ method: 'GET', url, headers: basic('operator', READER_KEY) })
    t.equal(reader.statusCode, 403, `${url} with a reader key`)
    t.equal(reader.json().error, 'forbidden')
    for (const user of ['operator', 'someone-else', '']) {
      const res = await app.inject({ method: 'GET', url, headers: basic(user, ADMIN_KEY) })
      t.equal(res.statusCode, 200, `${url} with the admin key, user "${user}"`)
    }
  }
  const page = await app.inject({ method: 'GET', url: '/admin/queues', headers: admin })
  t.equal(page.statusCode, 200, 'a Bearer admin key works too')
  t.match(page.headers['content-type'], /text\/html/)
  const api = await app.inject({
    method: 'GET',
    url: '/admin/queues/api/queues',
    headers: basic('operator', ADMIN_KEY),
  })
  t.same(
    api
      .json()
      .queues.map((q: { name: string }) => q.name)
      .sort(),
    [...ALL_QUEUES].sort(),
    'the board serves every queue of the contract',
  )
})

t.test(
  'in a real browser the dashboard lists every queue and shows the counters a worker reported',
  { skip: noChromium },
  async (t) => {
    // A real worker syncs a space twice against the Confluence stand-in: a first full sync,
    // then one with edited, deleted and unreadable pages, so every counter has its own value.
    const pages = generatedSpace(9)
    const rig = await ingestRig(t, { pages })
    await rig.startWorker()
    const { app, url } = await listenTestApp(t, { ...keys, ...rigApiEnv(rig) })
    const source = await registerRigSource(t, app, rig, admin)
    const sync = async () => {
      const res = await app.inject({
        method: 'POST',
        url: `/api/sources/${source}/sync`,
        headers: admin,
      })
      t.equal(res.statusCode, 202, res.body)
      t.equal(res.json().deduplicated, false)
      return res.json().job_id as string
    }

    const first = await sync()
    t.equal((await rig.waitFor(first)).state, 'completed')
    for (const page of pages.slice(1, 4)) {
      page.version = 2
      page.storage = `<p>Rewritten page ${page.id}.</p>`
    }
    pages.splice(8, 1)
    // The batch read fails, so pages are read one by one; page 1004 is then gone.
    rig.confluence.options.faults.push(
      { path: /\/api\/v2\/pages\?.*body-format=storage/, status: 400, times: 1 },
      { path: /\/api\/v2\/pages\/1004\b/, status: 404, times: 10 },
    )
    const second = await sync()
    t.equal((await rig.waitFor(second)).state, 'completed')

    const expected: Record<string, SyncProgress> = {
      [first]: { discovered: 9, converted: 9, embedded: 9, unchanged: 0, deleted: 0, failed: 0 },
      [second]: { discovered: 8, converted: 2, embedded: 2, unchanged: 5, deleted: 1, failed: 1 },
    }
    const queue = app.queues[QueueName.sync]
    for (const [id, progress] of Object.entries(expected)) {
      t.same((await queue.getJob(id))?.progress, progress, `the worker reported ${id}'s counters`)
    }

    const browser = await launchChromium(t)

    // No credentials: Chromium gets the Basic challenge, has nothing to answer, and the
    // navigation fails; a wrong key is answered 401 and no board is rendered.
    const anonymous = await browser.newContext()
    t.teardown(() => anonymous.close())
    await t.rejects(
      (await anonymous.newPage()).goto(`${url}/admin/queues`),
      /ERR_INVALID_AUTH_CREDENTIALS/,
    )
    const wrong = await browser.newContext({
      httpCredentials: { username: 'operator', password: 'not-the-admin-key-000' },
    })
    t.teardown(() => wrong.close())
    const wrongPage = await wrong.newPage()
    const refused = await wrongPage.goto(`${url}/admin/queues`)
    t.equal(refused?.status(), 401)
    t.match(await refused?.json(), { error: 'unauthorized' })
    t.equal(await wrongPage.locator('#root').count(), 0, 'no board for a wrong key')

    const context = await browser.newContext({
      httpCredentials: { username: 'operator', password: ADMIN_KEY },
    })
    t.teardown(() => context.close())
    const page = await context.newPage()
    const opened = await page.goto(`${url}/admin/queues`)
    t.equal(opened?.status(), 200)
    t.equal(await page.title(), 'confluence-bot', 'the board title from the config')

    // The overview has one card per queue, each linking to its queue page.
    const cards = page.locator('main a[href^="/admin/queues/queue/"]')
    await cards.first().waitFor({ timeout: 30_000 })
    t.same((await cards.allInnerTexts()).sort(), [...ALL_QUEUES].sort(), 'every queue has a card')
    const menu = page.locator('#bull-board-sidebar nav a')
    t.same((await menu.allInnerTexts()).sort(), [...ALL_QUEUES].sort(), 'and a menu entry')

    await page.locator('main').getByRole('link', { name: QueueName.sync, exact: true }).click()
    await page.waitForURL(`**/admin/queues/queue/${QueueName.sync}`)
    await page.getByRole('link', { name: /^COMPLETED/ }).click()
    await page.waitForURL(`**/admin/queues/queue/${QueueName.sync}?status=completed`)

    for (const [id, progress] of Object.entries(expected)) {
      await page.getByRole('link', { name: id, exact: true }).click()
      await page.waitForURL(`**/admin/queues/queue/${QueueName.sync}/${id}?**`)
      await page.getByRole('tabpanel').getByText(source).first().waitFor()
      t.pass(`${id} shows its data (the source id)`)
      t.same(await shownProgress(page), progress, `${id} shows its counters`)
      await page.goBack()
      await page.waitForURL(`**/admin/queues/queue/${QueueName.sync}?status=completed`)
    }
  },
)

import t from 'tap'
import { READER_KEY } from '../helpers/api.ts'
import { launchChromium, noChromium } from '../helpers/browser.ts'
import { groundedRig } from '../helpers/grounded.ts'

// A person exploring the API in Swagger UI, in a real browser: authorize with a key, try
// POST /api/search and POST /api/chat, and read hits and a cited answer from the index.

t.test('Swagger UI: search the space and get a cited answer', { skip: noChromium }, async (t) => {
  const { url, rig } = await groundedRig(t)
  rig.ollama.options.respond = (body) => {
    const last = (body.messages as Array<{ content: string }> | undefined)?.at(-1)?.content
    return last?.includes('n="1"') ? ['Roll back with helm [1].'] : undefined
  }
  const browser = await launchChromium(t)
  const page = await browser.newPage()
  await page.goto(`${url}/docs`)
  await page.waitForSelector('.opblock', { timeout: 30_000 })

  await page.click('.btn.authorize')
  await page.fill('.auth-container input', READER_KEY)
  await page.click('.auth-btn-wrapper .modal-btn.authorize')
  await page.click('.auth-btn-wrapper .btn-done')

  /** Tries an operation with a JSON body; the response body Swagger UI shows, parsed. */
  async function tryIt(path: string, body: unknown) {
    const block = page.locator(`.opblock-post:has([data-path="${path}"])`)
    await block.locator('.opblock-summary').click()
    // The docs open operations ready to try (tryItOutEnabled); the button then says Cancel.
    const tryOut = block.locator('button.try-out__btn')
    if ((await tryOut.textContent())?.trim() === 'Try it out') await tryOut.click()
    await block.locator('textarea.body-param__text').fill(JSON.stringify(body))
    await block.locator('.execute').click()
    const shown = block.locator('.live-responses-table .response-col_description pre').first()
    await shown.waitFor({ timeout: 30_000 })
    const status = await block
      .locator('.live-responses-table tbody .response-col_status')
      .first()
      .textContent()
    return { status: status?.trim(), json: JSON.parse((await shown.textContent()) ?? '') }
  }

  const found = await tryIt('/api/search', { query: 'roll back the billing deployment' })
  t.equal(found.status, '200')
  t.equal(found.json.results[0].title, 'Deploying the billing service')

  const answered = await tryIt('/api/chat', {
    messages: [{ role: 'user', content: 'How do I roll back the billing deployment?' }],
  })
  t.equal(answered.status, '200')
  t.equal(answered.json.choices[0].message.content, 'Roll back with helm [1].')
  t.match(answered.json.sources[0], { n: 1, title: 'Deploying the billing service', cited: true })
})

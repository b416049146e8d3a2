import t from 'tap'
import { READER_KEY } from '../helpers/api.ts'
import { noChromium } from '../helpers/browser.ts'
import { GROUNDED_PAGES, type Json } from '../helpers/grounded.ts'
import { askAndWait, citingModel, pageRig, signIn } from './page-rig.ts'

// Stopping an answer, and answers and pages that carry markup: nothing from a page or a model
// ever runs in the chat page.

const QUESTION = 'How do I roll back the billing deployment?'

// A page whose title and text are markup, synced like any other.
const HOSTILE_PAGE = {
  id: '104',
  spaceKey: 'ENG',
  version: 1,
  title: 'Billing rollback <img src=x onerror="window.__pwned=\'title\'">',
  storage:
    '<h1>Roll back billing</h1><p>To roll back the billing deployment run helm rollback billing; ' +
    'see &lt;script&gt;window.__pwned="text"&lt;/script&gt; for details.</p>',
  updatedAt: '2024-06-11T08:00:00.000Z',
}

const HOSTILE_ANSWER = [
  'Look <img src=x onerror="window.__pwned=\'img\'"> here ',
  '<script>window.__pwned="script"</script>\n\n',
  '[click me](javascript:window.__pwned="md-link") and ',
  '<a href="javascript:window.__pwned=\'a\'">raw</a> ',
  '<iframe src="javascript:window.__pwned=\'iframe\'"></iframe>',
  '<svg onload="window.__pwned=\'svg\'"><circle r="5"/></svg> ',
  '<b onmouseover="window.__pwned=\'hover\'" id="bold">bold</b> ',
  '<form action="https://evil.example/"><button>Send</button></form> [1]',
]

t.test('stop a running answer', { skip: noChromium }, async (t) => {
  const rig = await pageRig(t)
  const { page, errors } = await rig.open()
  await signIn(page, READER_KEY)
  const conversations = async () =>
    (
      (await fetch(`${rig.url}/api/conversations`, {
        headers: { authorization: `Bearer ${READER_KEY}` },
      }).then((r) => r.json())) as Json
    ).conversations as Json[]

  rig.rig.ollama.options.tokenDelayMs = 600
  await page.getByLabel('Your question').fill(QUESTION)
  await page.getByRole('button', { name: 'Ask', exact: true }).click()
  await page.locator('.message.assistant .answer', { hasText: 'Roll back' }).waitFor()
  const aborted = rig.rig.ollama.waitForAbort(15_000)
  await page.getByRole('button', { name: 'Stop answering' }).click()
  await page.locator('#status', { hasText: 'Stopped.' }).waitFor()
  const cut = await aborted
  t.equal(cut.path, '/api/chat', "the model's answer was cancelled upstream")
  t.match(
    await page.locator('.message.assistant .error').textContent(),
    /Stopped before the answer was complete/,
  )
  t.notMatch(
    await page.locator('.message.assistant .answer').textContent(),
    /roll back \[1\]\s*$/,
    'the answer stops where it was',
  )
  t.equal(await page.getByRole('button', { name: 'Stop answering' }).isDisabled(), true)
  t.same(await conversations(), [], 'a cut answer is not kept')
  t.equal(page.url().includes('#'), false, 'nor named in the address')
  // The question is not lost: it is back in the box, and the page says it was not kept.
  t.equal(await page.getByLabel('Your question').inputValue(), QUESTION, 'the question is back')
  t.match(
    await page.locator('.message.assistant .error').textContent(),
    /neither this question nor .* is kept/,
    'the note says the question was not kept either',
  )
  t.match(await page.locator('#status').textContent(), /back in the question box/)

  // Asked again as it is: answered in full, and kept with its question.
  rig.rig.ollama.options.tokenDelayMs = 0
  await page.getByRole('button', { name: 'Ask', exact: true }).click()
  await page.locator('#status', { hasText: /Answer complete/ }).waitFor({ timeout: 30_000 })
  const kept = await conversations()
  t.equal(kept.length, 1, 'the question asked again is answered and kept')
  const stored = (await fetch(`${rig.url}/api/conversations/${kept[0]?.id}`, {
    headers: { authorization: `Bearer ${READER_KEY}` },
  }).then((r) => r.json())) as Json
  t.same(
    stored.messages.map((m: Json) => [m.role, m.role === 'user' ? m.content : 'answer']),
    [
      ['user', QUESTION],
      ['assistant', 'answer'],
    ],
    'the conversation holds that question and its answer',
  )
  await page.reload()
  await page.locator('.message.user', { hasText: QUESTION }).waitFor({ timeout: 30_000 })
  t.equal(await page.locator('.message.user').count(), 1, 'a reload brings it back')

  // Stopped while the person already typed the next question: their text is left alone.
  rig.rig.ollama.options.tokenDelayMs = 600
  await page.getByLabel('Your question').fill('And the release checklist?')
  await page.keyboard.press('Enter')
  await page.locator('.message.assistant .answer', { hasText: 'Roll back' }).nth(1).waitFor()
  await page.getByLabel('Your question').fill('Something else')
  await page.keyboard.press('Escape')
  await page.locator('#status', { hasText: 'Stopped.' }).waitFor()
  t.equal(await page.getByLabel('Your question').inputValue(), 'Something else')
  t.match(await page.locator('#status').textContent(), /not kept/)
  rig.rig.ollama.options.tokenDelayMs = 0
  t.equal((await conversations()).length, 1)

  // A model that fails mid-answer: the page says so, never shows a short answer as complete.
  rig.rig.ollama.options.failAfterTokens = { count: 2, error: 'the model ran out of memory' }
  await page.getByRole('button', { name: 'New conversation' }).click()
  await page.getByLabel('Your question').fill(QUESTION)
  await page.keyboard.press('Enter')
  await page.locator('#status', { hasText: 'The answer failed' }).waitFor({ timeout: 30_000 })
  t.match(
    await page.locator('.message.assistant .error').last().textContent(),
    /^No complete answer: .*the model ran out of memory/,
  )
  delete rig.rig.ollama.options.failAfterTokens
  t.equal((await conversations()).length, 1, 'the failed answer is not kept either')
  t.same(errors, [], 'the page reported no error')
})

t.test('no markup from a page or an answer runs', { skip: noChromium }, async (t) => {
  const rig = await pageRig(t, { pages: [...GROUNDED_PAGES, HOSTILE_PAGE] })
  rig.rig.ollama.options.respond = citingModel(() => HOSTILE_ANSWER)
  // Without the page's CSP: the sanitiser alone must hold.
  const { page } = await rig.open({ bypassCSP: true })
  await signIn(page, READER_KEY)
  await askAndWait(page, 'How do I roll back billing? Any notes?')
  const answer = page.locator('.message.assistant').last()
  t.match(await answer.locator('.answer').textContent(), /Look\s+here/)
  t.equal(await answer.locator('img, script, iframe, svg, form, button').count(), 0)
  t.equal(
    await answer.evaluate(
      (el) =>
        [...el.querySelectorAll('*')].filter((n) =>
          [...n.attributes].some((a) => a.name.startsWith('on')),
        ).length,
    ),
    0,
    'no event handler attribute',
  )
  const hrefs = await answer
    .locator('a[href]')
    .evaluateAll((links) => links.map((a) => a.getAttribute('href')))
  t.ok(hrefs.length > 0, 'the citation is a link')
  for (const href of hrefs) t.match(href, /^https?:\/\//, `${href} is a web link`)
  await answer.getByText('click me').click()
  await answer.getByText('raw').click()
  await answer.getByText('bold').hover()
  const titles = await answer.locator('.source-title').allTextContents()
  t.ok(
    titles.some((title) => title.includes('<img src=x')),
    'a markup title is shown as text',
  )
  t.equal(await page.evaluate(() => (window as unknown as { __pwned?: string }).__pwned), undefined)
  t.equal(page.url().startsWith(rig.url), true, 'no link navigated the page away')
})

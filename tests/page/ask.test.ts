import t from 'tap'
import { READER_KEY } from '../helpers/api.ts'
import { noChromium } from '../helpers/browser.ts'
import type { Json } from '../helpers/grounded.ts'
import {
  ANSWER_TEXT,
  askAndWait,
  axeViolations,
  isRewrite,
  pageRig,
  saveArtifact,
  signIn,
} from './page-rig.ts'

// A person with only a browser: opens the page, gives their key, asks, watches the answer
// arrive, reads its sources, opens one, comes back later and goes on with the conversation.

const QUESTION = 'How do I roll back the billing deployment?'

t.test('ask the space a question in the chat page', { skip: noChromium }, async (t) => {
  const rig = await pageRig(t)
  const { context, page, errors } = await rig.open()

  t.test('an empty page asks for a key, and passes axe', async (t) => {
    await page.getByLabel('API key', { exact: true }).waitFor()
    t.equal(await page.locator('#app').isHidden(), true, 'nothing to ask before a key')
    t.same(await axeViolations(page), [], 'the sign-in form')
    await signIn(page, READER_KEY)
    t.same(errors, [], 'no script error')
    t.match(await page.locator('#who').textContent(), /a reader of every space/)
    t.equal(await page.locator('#admin').isHidden(), true, 'a reader sees no sources')
    await page.locator('#space-list label').nth(1).waitFor()
    t.same(
      await page.locator('#space-list label').allTextContents(),
      ['ENG (3 pages)', 'OPS (2 pages)'],
      'the indexed spaces to choose from',
    )
    t.same(await axeViolations(page), [], 'the empty chat')
  })

  t.test('the answer streams in token by token, rendered and cited', async (t) => {
    rig.rig.ollama.options.tokenDelayMs = 400
    t.teardown(() => {
      rig.rig.ollama.options.tokenDelayMs = 0
    })
    await page.getByLabel('Your question').fill(QUESTION)
    await page.keyboard.press('Enter')
    const answer = page.locator('.message.assistant .answer').last()
    await answer.filter({ hasText: 'Roll back' }).waitFor({ timeout: 30_000 })
    const partial = (await answer.textContent()) ?? ''
    const status = (await page.locator('#status').textContent()) ?? ''
    t.notMatch(partial, /roll back \[1\]\s*$/, 'the first tokens show before the last one came')
    t.equal(status, 'Answering…', 'the live region says an answer is coming')
    t.equal(await page.getByRole('button', { name: 'Stop answering' }).isEnabled(), true)
    await page.locator('#status', { hasText: /Answer complete/ }).waitFor({ timeout: 30_000 })
    t.match(await page.locator('#status').textContent(), /1 of \d+ sources cited/)

    t.equal(await answer.locator('pre code').textContent(), 'helm rollback billing 41\n')
    t.same(await answer.locator('table th').allTextContents(), ['Step', 'Command'])
    t.equal(await answer.locator('ul > li').count(), 2, 'a list')

    const sent = rig.rig.ollama.requests.filter((r) => r.path === '/api/chat').at(-1)?.body as Json
    t.equal(sent.stream, true)
    t.notOk(isRewrite(sent))
    const citations = answer.locator('a.cite')
    t.equal(await citations.count(), 3, 'each [1] is a link')
    const href = await citations.first().getAttribute('href')
    t.equal(await citations.first().getAttribute('rel'), 'noopener noreferrer')
    t.equal(await citations.first().getAttribute('target'), '_blank')

    const conversations = await fetch(`${rig.url}/api/conversations`, {
      headers: { authorization: `Bearer ${READER_KEY}` },
    }).then((r) => r.json() as Promise<Json>)
    const stored = await fetch(
      `${rig.url}/api/conversations/${conversations.conversations[0].id}`,
      {
        headers: { authorization: `Bearer ${READER_KEY}` },
      },
    ).then((r) => r.json() as Promise<Json>)
    const source = stored.messages[1].sources[0] as Json
    t.equal(stored.messages[1].content, ANSWER_TEXT, 'the whole answer was kept')
    t.equal(href, source.url, "a citation opens its source's section")
    t.match(source.url, /#/, 'the section anchor')

    const first = page.locator('.source-list li').first()
    t.equal(await first.locator('a').textContent(), 'Deploying the billing service')
    t.equal(await first.locator('a').getAttribute('href'), source.url)
    t.equal(await first.locator('.source-where').textContent(), source.breadcrumb)
    t.match(source.breadcrumb, /^ENG › Deploying the billing service › /)
    t.match(await first.textContent(), /Space ENG/)
    t.match(await first.locator('time').getAttribute('datetime'), '2024-06-10T08:00:00.000Z')
    t.match(await first.textContent(), /cited/)
    t.equal(await page.locator('.source-list li.cited').count(), 1, 'only the cited one marked')
    t.match(page.url(), new RegExp(`#${conversations.conversations[0].id}$`))

    t.same(await axeViolations(page), [], 'the answered page')
    const path = await saveArtifact(
      'chat-page-answered.png',
      await page.screenshot({ fullPage: true }),
    )
    t.comment(`screenshot of the answered page: ${path}`)
  })

  t.test('a citation opens the Confluence section in a new tab', async (t) => {
    const link = page.locator('.message.assistant a.cite').first()
    const href = (await link.getAttribute('href')) as string
    const [opened] = await Promise.all([context.waitForEvent('page'), link.click()])
    await opened.waitForLoadState('domcontentloaded').catch(() => undefined)
    t.equal(opened.url(), href, 'the tab shows the section URL')
    t.equal(
      await opened.evaluate(() => window.opener),
      null,
      'the opened tab has no handle on the chat page',
    )
    await opened.close()
  })

  t.test('after a reload the conversation is there and goes on', async (t) => {
    const id = page.url().split('#')[1] as string
    await page.reload()
    await page.locator('.message.assistant .answer', { hasText: 'Roll back' }).waitFor()
    t.equal(await page.locator('.message').count(), 2, 'the question and its answer, from the api')
    t.equal(
      await page.getByLabel('API key', { exact: true }).isVisible(),
      false,
      'the key is not asked again',
    )
    t.equal(
      await page.locator(`.open-conversation[data-id="${id}"]`).getAttribute('aria-current'),
      'true',
    )
    const before = rig.rig.ollama.requests.length
    await askAndWait(page, 'and how do I check it worked?')
    const calls = rig.rig.ollama.requests.slice(before).filter((r) => r.path === '/api/chat')
    const rewrite = (calls[0]?.body ?? {}) as Json
    t.ok(isRewrite(rewrite), 'the follow-up is read with its history')
    t.match(rewrite.messages[1].content, QUESTION)
    t.equal(page.url().split('#')[1], id, 'the same conversation')
    t.equal(await page.locator('.message').count(), 4)
    const stored = await fetch(`${rig.url}/api/conversations/${id}`, {
      headers: { authorization: `Bearer ${READER_KEY}` },
    }).then((r) => r.json() as Promise<Json>)
    t.equal(stored.messages.length, 4, 'the api kept the follow-up in it')
  })

  t.test('a conversation is deleted from the list; a new one starts empty', async (t) => {
    await page.getByRole('button', { name: 'New conversation' }).click()
    t.equal(await page.locator('.message').count(), 0)
    t.equal(await page.locator('.open-conversation[aria-current]').count(), 0, 'none is open')
    t.equal(page.url().includes('#'), false)
    await askAndWait(page, 'Where is the rollback runbook?')
    // The list is read again once the answer is complete.
    await page.locator('.open-conversation').nth(1).waitFor()
    t.equal(await page.locator('.open-conversation').count(), 2)
    const newest = page.locator('#history li').first()
    const title = await newest.locator('.open-conversation span').first().textContent()
    t.equal(title, 'Where is the rollback runbook?')
    await newest.getByRole('button', { name: /^Delete the conversation/ }).click()
    await page.locator('#status', { hasText: 'Deleted the conversation' }).waitFor()
    t.equal(await page.locator('.open-conversation').count(), 1)
    t.equal(await page.locator('.message').count(), 0, 'the deleted one is no longer shown')
    const left = await fetch(`${rig.url}/api/conversations`, {
      headers: { authorization: `Bearer ${READER_KEY}` },
    }).then((r) => r.json() as Promise<Json>)
    t.equal(left.conversations.length, 1, 'deleted through the api')
  })

  t.test('spaces: an unticked space is left out of the question', async (t) => {
    await page.getByLabel('OPS (2 pages)').uncheck()
    const before = rig.rig.ollama.requests.length
    await askAndWait(page, QUESTION)
    const answer = rig.rig.ollama.requests
      .slice(before)
      .filter((r) => r.path === '/api/chat')
      .at(-1)?.body as Json
    const prompt = answer.messages.at(-1).content as string
    t.notMatch(prompt, /Incident severity|On-call rotation/, 'no OPS excerpt')
    const sources = await page
      .locator('.message.assistant')
      .last()
      .locator('.source-meta')
      .allTextContents()
    t.ok(sources.length > 0)
    for (const meta of sources) t.match(meta, /Space ENG/)

    await page.getByLabel('ENG (3 pages)').uncheck()
    await page.getByLabel('Your question').fill(QUESTION)
    await page.keyboard.press('Enter')
    await page.locator('#status', { hasText: 'Tick at least one space to search.' }).waitFor()
    t.equal(await page.locator('#space-ENG:focus').count(), 1, 'the focus goes to the spaces')
    t.equal(await page.getByLabel('Your question').inputValue(), QUESTION, 'the question stays')
  })

  t.test('the page reported no error all along', async (t) => {
    t.same(errors, [])
  })
})

// The chat page: sign in with a key (when the api asks for one), ask, watch the answer stream
// in, open its sources; conversations, spaces, and for an admin the sources and their syncs.

import { startAdmin, stopAdmin } from './admin.js'
import { ApiError, call, chatStream, key } from './api.js'
import { renderAnswer, renderSources } from './render.js'

const $ = (id) => document.getElementById(id)
const el = {
  signIn: $('sign-in'),
  keyForm: $('key-form'),
  key: $('key'),
  keyError: $('key-error'),
  who: $('who'),
  signOut: $('sign-out'),
  app: $('app'),
  admin: $('admin'),
  history: $('history'),
  historyEmpty: $('history-empty'),
  newConversation: $('new-conversation'),
  spacesHint: $('spaces-hint'),
  spaceList: $('space-list'),
  messages: $('messages'),
  empty: $('empty'),
  status: $('status'),
  ask: $('ask'),
  question: $('question'),
  send: $('send'),
  stop: $('stop'),
}

const state = {
  me: null,
  spaces: [],
  conversationId: null,
  /** The AbortController of the answer being streamed, if one is. */
  running: null,
}

/** Why an answer was aborted when the person stopped it (Stop or Escape), not a sign-out. */
const STOPPED = 'stopped'

const say = (text) => {
  el.status.textContent = text
}

// ------------------------------------------------------------------------------------------
// Signing in

function showSignIn(message = '') {
  // Nothing of the previous key's stays on screen for the next one.
  stopAdmin()
  state.running?.abort()
  el.messages.replaceChildren()
  el.empty.hidden = false
  el.history.replaceChildren()
  el.spaceList.replaceChildren()
  el.app.hidden = true
  el.admin.hidden = true
  el.who.hidden = true
  el.signOut.hidden = true
  el.signIn.hidden = false
  el.keyError.textContent = message
  el.key.value = ''
  el.key.focus()
}

/** Any refusal of a key that was accepted before: back to the sign-in form. */
function handle(err) {
  if (err instanceof ApiError && err.status === 401) {
    key.forget()
    showSignIn('Your key is no longer accepted. Sign in with a valid key.')
    return true
  }
  return false
}

async function start() {
  try {
    state.me = await call('GET', '/api/me')
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      const had = key.get() !== ''
      key.forget()
      showSignIn(had ? 'That key was not accepted. Check it and try again.' : '')
      return false
    }
    showSignIn(`The server cannot be reached right now: ${err.message}`)
    return false
  }
  await showApp()
  return true
}

el.keyForm.addEventListener('submit', async (event) => {
  event.preventDefault()
  const value = el.key.value.trim()
  if (value === '') {
    el.keyError.textContent = 'Enter your API key first.'
    el.key.focus()
    return
  }
  key.set(value)
  if (await start()) el.question.focus()
})

el.signOut.addEventListener('click', () => {
  key.forget()
  showSignIn('Your key is forgotten in this tab.')
})

// The skip link moves the focus itself: following it as an anchor would replace the
// conversation named in the address.
document.querySelector('.skip').addEventListener('click', (event) => {
  event.preventDefault()
  el.question.focus()
})

async function showApp() {
  const { me } = state
  el.signIn.hidden = true
  el.app.hidden = false
  const scope = me.spaces === null ? 'every space' : `spaces ${me.spaces.join(', ')}`
  el.who.textContent = me.auth
    ? `Signed in: ${me.role === 'admin' ? 'an admin' : 'a reader'} of ${scope}`
    : 'Open access: this server asks for no key'
  el.who.hidden = false
  el.signOut.hidden = !me.auth
  el.admin.hidden = me.role !== 'admin'
  await Promise.all([loadSpaces(), loadHistory(), openFromAddress()])
  if (me.role === 'admin') startAdmin(handle)
}

// ------------------------------------------------------------------------------------------
// Spaces

async function loadSpaces() {
  try {
    state.spaces = (await call('GET', '/api/spaces')).spaces
  } catch (err) {
    if (handle(err)) return
    el.spacesHint.textContent = `The spaces could not be listed: ${err.message}`
    return
  }
  el.spacesHint.textContent =
    state.spaces.length === 0
      ? 'Nothing is indexed yet: once a source has synced, its spaces appear here.'
      : 'Answers come from the ticked spaces.'
  el.spaceList.replaceChildren(
    ...state.spaces.map((space) => {
      const item = document.createElement('li')
      const box = document.createElement('input')
      box.type = 'checkbox'
      box.checked = true
      box.value = space.key
      box.id = `space-${space.key}`
      const label = document.createElement('label')
      label.htmlFor = box.id
      label.textContent = `${space.key} (${space.pages} ${space.pages === 1 ? 'page' : 'pages'})`
      item.append(box, label)
      return item
    }),
  )
}

/** The ticked spaces; undefined when all are (the key's own limits then apply, new ones too). */
function chosenSpaces() {
  const boxes = [...el.spaceList.querySelectorAll('input[type=checkbox]')]
  const ticked = boxes.filter((b) => b.checked).map((b) => b.value)
  return ticked.length === boxes.length ? undefined : ticked
}

// ------------------------------------------------------------------------------------------
// Conversations

const when = (iso) =>
  new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })

async function loadHistory() {
  let list
  try {
    list = (await call('GET', '/api/conversations?limit=50')).conversations
  } catch (err) {
    if (!handle(err)) say(`Your conversations could not be listed: ${err.message}`)
    return
  }
  el.historyEmpty.hidden = list.length > 0
  el.history.replaceChildren(
    ...list.map((conversation) => {
      const item = document.createElement('li')
      const open = document.createElement('button')
      open.type = 'button'
      open.className = 'open-conversation'
      open.dataset.id = conversation.id
      if (conversation.id === state.conversationId) open.setAttribute('aria-current', 'true')
      const title = document.createElement('span')
      title.textContent = conversation.title
      const date = document.createElement('span')
      date.className = 'hint'
      date.textContent = when(conversation.updated_at)
      open.append(title, date)
      open.addEventListener('click', () => openConversation(conversation.id, true))
      const remove = document.createElement('button')
      remove.type = 'button'
      remove.className = 'quiet delete'
      remove.textContent = 'Delete'
      remove.setAttribute('aria-label', `Delete the conversation “${conversation.title}”`)
      remove.addEventListener('click', () => deleteConversation(conversation))
      item.append(open, remove)
      return item
    }),
  )
}

async function deleteConversation(conversation) {
  try {
    await call('DELETE', `/api/conversations/${encodeURIComponent(conversation.id)}`)
  } catch (err) {
    if (!handle(err)) say(`The conversation could not be deleted: ${err.message}`)
    return
  }
  if (conversation.id === state.conversationId) clearConversation()
  // The list is read again before the deletion is announced: what is said is what is shown.
  await loadHistory()
  say(`Deleted the conversation “${conversation.title}”.`)
  el.newConversation.focus()
}

/** The conversation shown is named in the address, so a reload (or a bookmark) reopens it. */
function remember(id) {
  state.conversationId = id
  history.replaceState(null, '', id === null ? location.pathname : `#${id}`)
}

/** The open conversation is marked in the list (aria-current), the others not. */
function markCurrent() {
  for (const button of el.history.querySelectorAll('.open-conversation')) {
    if (button.dataset.id === state.conversationId) button.setAttribute('aria-current', 'true')
    else button.removeAttribute('aria-current')
  }
}

function clearConversation() {
  state.running?.abort()
  remember(null)
  markCurrent()
  el.messages.replaceChildren()
  el.empty.hidden = false
}

async function openFromAddress() {
  const id = decodeURIComponent(location.hash.slice(1))
  if (/^conv_[A-Za-z0-9_-]+$/.test(id)) await openConversation(id, false)
}

async function openConversation(id, focus) {
  let conversation
  try {
    conversation = await call('GET', `/api/conversations/${encodeURIComponent(id)}`)
  } catch (err) {
    if (handle(err)) return
    remember(null)
    say(
      err.status === 404
        ? 'That conversation is gone (it expired or was deleted).'
        : `The conversation could not be opened: ${err.message}`,
    )
    return
  }
  clearConversation()
  remember(conversation.id)
  for (const message of conversation.messages) {
    if (message.role === 'user') addQuestion(message.content)
    else addAnswer().show(message.content, message.sources ?? [])
  }
  markCurrent()
  say(`Opened the conversation “${conversation.title}”.`)
  if (focus) el.question.focus()
}

el.newConversation.addEventListener('click', () => {
  clearConversation()
  say('New conversation.')
  el.question.focus()
})

// ------------------------------------------------------------------------------------------
// Messages

function message(role, heading) {
  const item = document.createElement('li')
  item.className = `message ${role}`
  const h = document.createElement('h3')
  h.className = 'visually-hidden'
  h.textContent = heading
  item.append(h)
  el.messages.append(item)
  el.empty.hidden = true
  return item
}

function addQuestion(text) {
  const body = document.createElement('p')
  body.className = 'question'
  body.textContent = text
  message('user', 'You asked').append(body)
}

/** An answer's place in the conversation: its text, its sources, what went wrong. */
function addAnswer() {
  const item = message('assistant', 'Answer')
  const body = document.createElement('div')
  body.className = 'answer'
  const sourcesTitle = document.createElement('h4')
  sourcesTitle.className = 'sources-title'
  sourcesTitle.textContent = 'Sources'
  sourcesTitle.hidden = true
  const sources = document.createElement('ol')
  sources.className = 'source-list'
  const problem = document.createElement('p')
  problem.className = 'error'
  problem.hidden = true
  item.append(body, problem, sourcesTitle, sources)
  return {
    item,
    show(text, list) {
      renderAnswer(body, text, list)
      renderSources(sources, list)
      sourcesTitle.hidden = list.length === 0
    },
    fail(text) {
      problem.textContent = text
      problem.hidden = false
    },
  }
}

// ------------------------------------------------------------------------------------------
// Asking

function setRunning(controller) {
  state.running = controller
  el.stop.disabled = controller === null
  el.send.disabled = controller !== null
  el.messages.setAttribute('aria-busy', String(controller !== null))
}

async function ask(question) {
  const controller = new AbortController()
  setRunning(controller)
  addQuestion(question)
  const answer = addAnswer()
  answer.item.scrollIntoView({ block: 'start' })
  say('Searching your spaces…')
  let text = ''
  let sources = []
  let newId = null
  let finished = false
  let failed = null
  let frame = 0
  const draw = () => {
    frame = 0
    answer.show(text, sources)
  }
  const body = { messages: [{ role: 'user', content: question }] }
  if (state.conversationId !== null) body.conversation_id = state.conversationId
  const spaces = chosenSpaces()
  if (spaces !== undefined) body.rag = { spaces }
  try {
    await chatStream(body, controller.signal, (line) => {
      if (typeof line.error === 'string') {
        failed = typeof line.message === 'string' ? line.message : line.error
      } else if (Array.isArray(line.sources)) {
        sources = line.sources
        newId = line.conversation_id ?? null
        say('Answering…')
        draw()
      } else if (line.done === true) {
        text += line.message?.content ?? ''
        const cited = new Set(line.cited ?? [])
        sources = sources.map((s) => ({ ...s, cited: cited.has(s.n) }))
        finished = true
      } else {
        text += line.message?.content ?? ''
        frame ||= requestAnimationFrame(draw)
      }
    })
  } catch (err) {
    if (controller.signal.aborted) {
      cancelAnimationFrame(frame)
      setRunning(null)
      // A sign-out or a new conversation stopped it: the view it belonged to is gone already.
      if (controller.signal.reason !== STOPPED) return
      draw()
      answer.fail(
        'Stopped before the answer was complete: neither this question nor this part of its ' +
          'answer is kept in the conversation.',
      )
      giveBack(question)
      return
    }
    if (handle(err)) {
      setRunning(null)
      return
    }
    failed = err.message
  }
  cancelAnimationFrame(frame)
  draw()
  setRunning(null)
  if (failed !== null || !finished) {
    const why = failed ?? 'the answer ended before it was complete'
    answer.fail(`No complete answer: ${why}`)
    say(`The answer failed: ${why}`)
    return
  }
  // Only a complete answer is kept: its conversation exists now.
  if (newId !== null) remember(newId)
  const cited = sources.filter((s) => s.cited).length
  say(
    `Answer complete${sources.length === 0 ? '' : `, ${cited} of ${sources.length} sources cited`}.`,
  )
  await loadHistory()
}

/**
 * A stopped question is not stored (only a complete answer is), so it would be lost with a
 * reload or a new conversation: it goes back into the question box to be asked again, unless
 * the person has typed something there meanwhile.
 */
function giveBack(question) {
  if (el.question.value.trim() !== '') {
    say('Stopped. Your question was not kept (it is shown above); what you typed is left as it is.')
    return
  }
  el.question.value = question
  say('Stopped. Your question was not kept: it is back in the question box, to ask it again.')
}

el.ask.addEventListener('submit', (event) => {
  event.preventDefault()
  if (state.running !== null) return
  const question = el.question.value.trim()
  if (question === '') {
    say('Type a question first.')
    el.question.focus()
    return
  }
  if (chosenSpaces()?.length === 0) {
    say('Tick at least one space to search.')
    el.spaceList.querySelector('input')?.focus()
    return
  }
  el.question.value = ''
  void ask(question)
})

el.question.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault()
    el.ask.requestSubmit()
  }
})

el.stop.addEventListener('click', () => {
  state.running?.abort(STOPPED)
  el.question.focus()
})

document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && state.running !== null) {
    state.running.abort(STOPPED)
    el.question.focus()
  }
})

void start()

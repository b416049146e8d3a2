// The admin part of the page: each source, the state and progress of its last sync, and a
// button that starts one. While a sync waits or runs the table is read again every second.

import { call } from './api.js'

const POLL_MS = 1000
const rows = document.getElementById('source-rows')
const empty = document.getElementById('sources-empty')
const status = document.getElementById('admin-status')

const STATE_TEXT = {
  waiting: 'Waiting to start',
  active: 'Running',
  completed: 'Completed',
  failed: 'Failed',
}

let timer = 0
/** Whether the admin part is shown: a read that ends after sign-out schedules no other. */
let running = false
/** The last state seen of each source's last job, to announce a change once. */
const seen = new Map()
let onRefusal = () => false

const cell = (text) => {
  const td = document.createElement('td')
  td.textContent = text
  return td
}

const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '')

function progressText(job) {
  const p = job.progress
  const parts = [`${p.discovered} found`, `${p.embedded} indexed`, `${p.unchanged} unchanged`]
  if (p.deleted > 0) parts.push(`${p.deleted} deleted`)
  if (p.failed > 0) parts.push(`${p.failed} failed`)
  return parts.join(' · ')
}

function row(source, job) {
  const tr = document.createElement('tr')
  tr.dataset.source = source.id
  const name = document.createElement('th')
  name.scope = 'row'
  name.textContent = source.name
  const last = cell(
    job === undefined
      ? 'Never synced'
      : `${STATE_TEXT[job.state]} ${time(job.finished_at ?? job.started_at ?? job.created_at)}`,
  )
  last.className = 'job-state'
  last.dataset.state = job?.state ?? 'none'
  if (job?.state === 'failed' && job.failed_reason) last.title = job.failed_reason
  const progress = cell(job === undefined ? '' : progressText(job))
  progress.className = 'job-progress'
  const actions = document.createElement('td')
  const button = document.createElement('button')
  button.type = 'button'
  button.className = 'sync-now'
  button.textContent = 'Sync now'
  button.setAttribute('aria-label', `Sync now: ${source.name}`)
  button.addEventListener('click', () => syncNow(source))
  actions.append(button)
  tr.append(name, cell(source.spaces.join(', ')), last, progress, actions)
  return tr
}

async function refresh() {
  clearTimeout(timer)
  let sources
  let jobs
  try {
    sources = (await call('GET', '/api/sources')).sources
    jobs = await Promise.all(
      sources.map(async (source) => {
        const query = `source_id=${encodeURIComponent(source.id)}&limit=1`
        return (await call('GET', `/api/jobs?${query}`)).jobs[0]
      }),
    )
  } catch (err) {
    if (!onRefusal(err)) status.textContent = `The sources could not be read: ${err.message}`
    return
  }
  if (!running) return
  const focused = document.activeElement?.closest('tr')?.dataset.source
  rows.replaceChildren(...sources.map((source, i) => row(source, jobs[i])))
  empty.hidden = sources.length > 0
  // A refreshed row is a new element: focus goes back to where it was.
  if (focused !== undefined) {
    rows.querySelector(`tr[data-source="${CSS.escape(focused)}"] button`)?.focus()
  }
  sources.forEach((source, i) => {
    const job = jobs[i]
    if (job === undefined) return
    const before = seen.get(source.id)
    const now = `${job.id} ${job.state}`
    if (
      before !== undefined &&
      before !== now &&
      (job.state === 'completed' || job.state === 'failed')
    ) {
      status.textContent = `The sync of ${source.name} ${job.state === 'completed' ? 'completed' : 'failed'}: ${progressText(job)}.`
    }
    seen.set(source.id, now)
  })
  if (jobs.some((job) => job?.state === 'waiting' || job?.state === 'active')) {
    timer = setTimeout(refresh, POLL_MS)
  }
}

async function syncNow(source) {
  try {
    const accepted = await call('POST', `/api/sources/${encodeURIComponent(source.id)}/sync`, {})
    status.textContent = accepted.deduplicated
      ? `A sync of ${source.name} is already under way.`
      : `Sync of ${source.name} started.`
  } catch (err) {
    if (!onRefusal(err)) status.textContent = `The sync could not be started: ${err.message}`
    return
  }
  await refresh()
}

/** Shows the admin part; `refused` handles an answer that means the key is no longer valid. */
export function startAdmin(refused) {
  onRefusal = refused
  running = true
  void refresh()
}

/** Hides what the admin part showed and stops reading the jobs (the key was dropped). */
export function stopAdmin() {
  running = false
  clearTimeout(timer)
  seen.clear()
  rows.replaceChildren()
  status.textContent = ''
}

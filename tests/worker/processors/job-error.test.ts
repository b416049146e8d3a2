import { UnrecoverableError } from 'bullmq'
import t from 'tap'
import { asJobError, ConfluenceError } from '../../../services/worker/src/confluence/errors.ts'

t.test('a fatal source error ends the job; a transient one is retried', async (t) => {
  const fatal = asJobError(new ConfluenceError('auth', 'Confluence refused the credentials (401)'))
  t.type(fatal, UnrecoverableError)
  t.equal((fatal as Error).message, 'Confluence refused the credentials (401)')
  const transient = new ConfluenceError('unavailable', 'Confluence answered 503')
  t.equal(asJobError(transient), transient)
  const other = new Error('socket hang up')
  t.equal(asJobError(other), other)
})

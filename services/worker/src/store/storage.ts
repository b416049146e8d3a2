import { constants } from 'node:fs'
import * as fs from 'node:fs/promises'
import { dirname } from 'node:path'
import { UnrecoverableError } from 'bullmq'

// The index's storage refusing writes (a read-only or full file system) is not a problem of one
// page or one batch: every write fails alike until an operator fixes it. LanceDB reports it deep
// in a Rust error chain ("LanceError(IO): Read-only file system (os error 30) at path …"); these
// helpers name it once, in words an operator acts on, for the job that failed and for the
// worker's readiness.

/** Free space under which the index's file system counts as full (one batch writes about that). */
export const MIN_FREE_BYTES = 1024 * 1024

/** Words every "the index cannot be written" error carries (how the sync tells one apart). */
const UNWRITABLE = 'cannot be written:'

/** What the storage error `err` says is wrong, or undefined when it is not one. */
export function storageProblem(err: unknown): string | undefined {
  const text = err instanceof Error ? err.message : String(err)
  if (/read-only file system|os error 30\b/i.test(text)) return 'read-only file system'
  if (/no space left on device|os error 28\b/i.test(text)) return 'no space left on device'
  return undefined
}

/**
 * A write's error as the job reports it: a storage problem becomes a short error naming the
 * index and the problem, unrecoverable (retrying a batch cannot help: the sync fails, and the
 * sync's own retry runs once the storage is fixed); any other error is returned as it is.
 */
export function writeError(err: unknown, uri: string): unknown {
  const problem = storageProblem(err)
  if (problem === undefined) return err
  return new UnrecoverableError(`The index at LANCEDB_URI=${uri} ${UNWRITABLE} ${problem}`)
}

/** True for a failure reason writeError made. */
export const isUnwritable = (reason: string): boolean => reason.includes(UNWRITABLE)

/** The two calls the check makes (tests give a file system that is read-only or full). */
export type StorageFs = Pick<typeof fs, 'access' | 'statfs'>

/**
 * Why the index directory cannot take writes now, or undefined when it can (or lives in object
 * storage, which has no such state to look at). The directory is created by the first write:
 * until then its nearest existing parent is what is checked.
 */
export async function storageFault(uri: string, use: StorageFs = fs): Promise<string | undefined> {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri)) return undefined
  let dir = uri
  while (
    !(await use.access(dir).then(
      () => true,
      () => false,
    ))
  )
    dir = dirname(dir)
  try {
    await use.access(dir, constants.W_OK)
  } catch (err) {
    return `${dir}: ${(err as Error).message}`
  }
  const { bavail, bsize } = await use.statfs(dir)
  const free = bavail * bsize
  if (free >= MIN_FREE_BYTES) return undefined
  return `${dir}: no space left on device (${Math.floor(free / 1024)} KiB free)`
}

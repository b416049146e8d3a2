import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

// Encryption at rest of source credentials (and anything else small that must not sit in Redis
// in clear). AES-256-GCM with a random 96-bit IV per record, authenticated with the record's
// owner (a source id) as additional data, so a sealed value copied into another source's slot
// does not open. The key is 32 random bytes from SECRETS_KEY; SECRETS_KEY_PREVIOUS lists keys
// that still open old records while they are re-sealed under the current one (rotation).
//
// A sealed value is a JSON envelope naming the key that sealed it by an id: an HMAC of a fixed
// label under the key, which identifies the key without revealing anything about it.

export const SECRETS_KEY_BYTES = 32
const IV_BYTES = 12
const ALGORITHM = 'aes-256-gcm'
const ENVELOPE = 'cnfl-sealed-v1'

type Key = { readonly id: string; readonly bytes: Buffer }

/** The keys of this process: `current` seals and opens, `previous` only open. */
export type Keyring = { readonly current: Key; readonly previous: readonly Key[] }

type Envelope = { v: typeof ENVELOPE; kid: string; iv: string; tag: string; data: string }

/** Why a sealed value could not be opened (or a value could not be sealed). Never quotes it. */
export class SecretsError extends Error {
  override name = 'SecretsError'
}

const HEX_KEY = /^[0-9a-fA-F]{64}$/
const BASE64_KEY = /^[A-Za-z0-9+/_-]{43}=?$/

/** The 32 key bytes written as 64 hex digits or base64 (standard or url-safe); else undefined. */
export function decodeSecretsKey(raw: string): Buffer | undefined {
  const text = raw.trim()
  if (HEX_KEY.test(text)) return Buffer.from(text, 'hex')
  // 43 base64 digits carry 258 bits: exactly 32 bytes once decoded.
  if (!BASE64_KEY.test(text)) return undefined
  return Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
}

/** A fresh key, written the way SECRETS_KEY takes it (base64). */
export function generateSecretsKey(): string {
  return randomBytes(SECRETS_KEY_BYTES).toString('base64')
}

/**
 * The key kept in `file` for a one-machine install (`./confluence-bot start`), created there on
 * first use readable by its owner only. `created` says whether this call wrote it. A file that
 * holds no key is an error naming the file, never quoting it.
 */
export function secretsKeyFile(file: string): { key: string; created: boolean } {
  try {
    const key = readFileSync(file, 'utf8').trim()
    if (decodeSecretsKey(key) === undefined) {
      throw new SecretsError(
        `${file} holds no secrets key (expected 32 bytes as base64 or hex); fix or remove it, but removing it makes stored source credentials unreadable`,
      )
    }
    return { key, created: false }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  mkdirSync(dirname(file), { recursive: true })
  const key = generateSecretsKey()
  // `wx`: two starts racing on a fresh checkout cannot both write (the loser fails loudly).
  writeFileSync(file, `${key}\n`, { mode: 0o600, flag: 'wx' })
  return { key, created: true }
}

export function secretsKeyId(bytes: Buffer): string {
  return createHmac('sha256', bytes)
    .update('confluence-bot secrets key id')
    .digest('hex')
    .slice(0, 16)
}

const splitList = (raw: string) =>
  raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')

/**
 * What is wrong with SECRETS_KEY / SECRETS_KEY_PREVIOUS, one line per problem, naming the
 * variable and never the value.
 */
export function secretsKeyProblems(current: string, previous: string): string[] {
  const how = 'expected 32 random bytes as 64 hex digits or base64, e.g. `openssl rand -base64 32`'
  const problems: string[] = []
  if (current !== '' && decodeSecretsKey(current) === undefined) {
    problems.push(`SECRETS_KEY is not a key (${how}; value not shown)`)
  }
  splitList(previous).forEach((entry, i) => {
    if (decodeSecretsKey(entry) === undefined) {
      problems.push(`SECRETS_KEY_PREVIOUS key #${i + 1} is not a key (${how}; value not shown)`)
    }
  })
  if (current === '' && previous.trim() !== '') {
    problems.push('SECRETS_KEY_PREVIOUS is set without SECRETS_KEY: set the new key too')
  }
  return problems
}

const toKey = (bytes: Buffer): Key => ({ id: secretsKeyId(bytes), bytes })

/**
 * The keyring of SECRETS_KEY and SECRETS_KEY_PREVIOUS (already checked by the config loader),
 * or undefined when no key is set.
 */
export function createKeyring(settings: {
  SECRETS_KEY: string
  SECRETS_KEY_PREVIOUS: string
}): Keyring | undefined {
  const current = decodeSecretsKey(settings.SECRETS_KEY)
  if (current === undefined) return undefined
  const previous = splitList(settings.SECRETS_KEY_PREVIOUS)
    .map((raw) => decodeSecretsKey(raw))
    .filter((bytes): bytes is Buffer => bytes !== undefined)
    .map(toKey)
  return Object.freeze({ current: toKey(current), previous: Object.freeze(previous) })
}

/** Seals `plaintext` under the keyring's current key, bound to `owner` (e.g. a source id). */
export function sealSecret(keyring: Keyring, owner: string, plaintext: string): string {
  const iv = randomBytes(IV_BYTES)
  const cipher = createCipheriv(ALGORITHM, keyring.current.bytes, iv)
  cipher.setAAD(Buffer.from(owner))
  const data = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
  const envelope: Envelope = {
    v: ENVELOPE,
    kid: keyring.current.id,
    iv: iv.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
    data: data.toString('base64'),
  }
  return JSON.stringify(envelope)
}

/** The envelope in a stored value, or undefined when the value was stored in clear. */
export function sealedEnvelope(stored: string): Envelope | undefined {
  try {
    const parsed = JSON.parse(stored) as Partial<Envelope> | null
    return parsed?.v === ENVELOPE ? (parsed as Envelope) : undefined
  } catch {
    return undefined
  }
}

export type Opened = {
  plaintext: string
  /** true when the value is not sealed under the current key (in clear, or an older key). */
  stale: boolean
}

/**
 * Opens a stored value: a sealed one with the key that sealed it, one stored in clear by an
 * earlier version as it is. `what` names the value in errors ("the credentials of source x").
 */
export function openSecret(
  keyring: Keyring | undefined,
  owner: string,
  stored: string,
  what: string,
): Opened {
  const envelope = sealedEnvelope(stored)
  if (envelope === undefined) return { plaintext: stored, stale: true }
  if (keyring === undefined) {
    throw new SecretsError(
      `${what} are encrypted, but SECRETS_KEY is not set: set the key they were encrypted with (key id ${envelope.kid})`,
    )
  }
  const key = [keyring.current, ...keyring.previous].find((k) => k.id === envelope.kid)
  if (key === undefined) {
    throw new SecretsError(
      `${what} were encrypted with key id ${envelope.kid}, which is neither SECRETS_KEY (key id ${keyring.current.id}) nor in SECRETS_KEY_PREVIOUS: set that key in SECRETS_KEY_PREVIOUS, or register the credentials again`,
    )
  }
  try {
    const decipher = createDecipheriv(ALGORITHM, key.bytes, Buffer.from(envelope.iv, 'base64'))
    decipher.setAAD(Buffer.from(owner))
    decipher.setAuthTag(Buffer.from(envelope.tag, 'base64'))
    const data = Buffer.concat([
      decipher.update(Buffer.from(envelope.data, 'base64')),
      decipher.final(),
    ])
    return { plaintext: data.toString('utf8'), stale: key !== keyring.current }
  } catch {
    // A wrong tag, IV or data: the record was altered, or belongs to another owner.
    throw new SecretsError(
      `${what} do not decrypt with key id ${key.id}: the stored record is damaged or not this source's; register the credentials again`,
    )
  }
}

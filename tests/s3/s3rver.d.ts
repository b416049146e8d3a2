// s3rver ships no types: the part of its API the S3 tests use.
declare module 's3rver' {
  import type { Server } from 'node:http'
  import type { AddressInfo } from 'node:net'

  type ListOptions = { delimiter?: string; prefix?: string; maxKeys?: number; startAfter?: string }
  type Listed = { objects: Array<{ key: string }>; commonPrefixes: string[]; isTruncated: boolean }

  export default class S3rver {
    constructor(options: {
      address?: string
      port?: number
      silent?: boolean
      directory: string
      configureBuckets?: Array<{ name: string; configs: Array<string | Buffer> }>
    })
    store: { listObjects(bucket: string, options: ListOptions): Promise<Listed> }
    httpServer: Server
    run(): Promise<AddressInfo>
    close(): Promise<void>
  }
}

declare module 's3rver/lib/models/account.js' {
  const account: {
    /** The account every signed request is checked against. */
    DUMMY_ACCOUNT: { createKeyPair(accessKeyId: string, secretAccessKey: string): void }
  }
  export default account
}

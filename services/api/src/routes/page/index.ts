import { basename, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance } from 'fastify'

// / — the chat page (the bot UI): plain HTML, CSS and ES modules from services/api/src/page,
// and the two browser libraries it imports (marked renders the answers' markdown, DOMPurify
// sanitises the result), served from the api's own node_modules: no CDN, no build step.

/**
 * The page's files. Both src/routes/page (run from source) and dist/routes/page (the compiled
 * service) are three levels below the package, which ships src/ with it, so one path serves both.
 */
export const PAGE_DIR = fileURLToPath(new URL('../../../src/page/', import.meta.url))

/** The ES module builds, as the packages export them to `import`. */
export const VENDOR: Record<string, string> = {
  'marked.js': fileURLToPath(import.meta.resolve('marked')),
  'purify.js': fileURLToPath(import.meta.resolve('dompurify')),
}

/**
 * Nothing but the api's own scripts, styles and fetches: an answer that smuggled markup past
 * the sanitiser still could not run a script, load an image from elsewhere (a beacon), or be
 * framed by another site. No inline script or style exists for it to allow.
 */
export const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ')

export default async function chatPage(fastify: FastifyInstance) {
  fastify.addHook('onSend', async (_request, reply) => {
    reply.header('content-security-policy', PAGE_CSP)
    reply.header('x-content-type-options', 'nosniff')
    // A citation opens Confluence; the page's own URL (a conversation id) is not sent along.
    reply.header('referrer-policy', 'no-referrer')
  })
  // One route per file found at start (no wildcard: the api's own 404 answers everything else),
  // and `/` for index.html.
  await fastify.register(fastifyStatic, { root: PAGE_DIR, prefix: '/', wildcard: false })
  for (const [name, file] of Object.entries(VENDOR)) {
    fastify.get(`/vendor/${name}`, (_request, reply) =>
      reply.sendFile(basename(file), dirname(file)),
    )
  }
}

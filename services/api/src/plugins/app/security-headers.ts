import helmet from '@fastify/helmet'
import type { FastifyInstance, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { DASHBOARD_PATH } from '../../routes/admin/queues.ts'

// Security headers on every response. Most of the API answers JSON or NDJSON, which a browser
// should never render, sniff into a script, frame, or load from another site's page; the policy
// below says so. Two surfaces serve HTML and bring their own, stricter or wider, CSP: the chat
// page (routes/page, `PAGE_CSP`) and Swagger UI at /docs (`DOCS_CSP` below, which
// @fastify/swagger-ui sets as its staticCSP).
// Helmet writes its headers when a request arrives; theirs are set on the reply as it is sent
// and replace helmet's, so a response carries exactly one Content-Security-Policy, never two
// that a browser would combine. The queue dashboard (bull-board, admin only) is an app of its
// own: it gets a CSP that lets its scripts, styles (inline ones included, which its markup
// uses) and API calls load from the api itself, and nothing from anywhere else: the product runs
// offline, and an operator's browser must not tell a third party each time it opens the
// dashboard. bull-board's page links Google's fonts; that link is taken out of the page (so
// the browser does not even try, and logs no violation) and its CSS falls back to system fonts.
//
// HSTS is not sent: the api speaks plain HTTP and TLS is the ingress's job (SECURITY.md). A
// browser ignores HSTS over plain HTTP, and the one place it means something, the TLS
// terminator, knows the real host name and whether subdomains are also served over TLS,
// which includeSubDomains would commit them to.

/** For responses that are data: nothing may load, run or frame them. */
export const API_CSP = {
  useDefaults: false,
  directives: {
    defaultSrc: ["'none'"],
    baseUri: ["'none'"],
    formAction: ["'none'"],
    frameAncestors: ["'none'"],
  },
}

/** bull-board's page: its own files and inline styles, nothing else. */
export const DASHBOARD_CSP = {
  useDefaults: false,
  directives: {
    defaultSrc: ["'self'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'", "'unsafe-inline'"],
    fontSrc: ["'self'", 'data:'],
    imgSrc: ["'self'", 'data:'],
    connectSrc: ["'self'"],
    objectSrc: ["'none'"],
    baseUri: ["'self'"],
    formAction: ["'self'"],
    frameAncestors: ["'none'"],
  },
}

/**
 * Swagger UI at /docs, in place of @fastify/swagger-ui's own policy, which names `https:` as a
 * source of styles and fonts, the Swagger validator's site, lets a page of the api frame it, and
 * asks for `upgrade-insecure-requests`: over plain HTTP on any host name but loopback (the api
 * speaks HTTP behind its TLS terminator, or none on a LAN) the browser then fetched every file
 * of the page over HTTPS from a port that speaks none, and /docs stayed blank. The one hash lets
 * the `<style>` inside Swagger UI's logo (`.logo_small_svg__cls-2{fill:#fff}…`, its colours),
 * which its script inserts, apply: the page then runs without a single violation. A newer
 * Swagger UI with another logo would be refused that style (the logo turns black, nothing else
 * changes) and the headers test says so.
 */
export const DOCS_CSP = [
  "default-src 'self'",
  "base-uri 'self'",
  "font-src 'self' data:",
  "img-src 'self' data:",
  "object-src 'none'",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ')

/** A stylesheet or font linked from another site (bull-board's pages link only their own relatively). */
const FOREIGN_LINK = /<link\b[^>]*\bhref="https?:\/\/[^"]*"[^>]*>\s*/gi

async function securityHeaders(fastify: FastifyInstance) {
  // Before helmet's own onRoute hook, which reads a route's `helmet` options.
  fastify.addHook('onRoute', (route: RouteOptions) => {
    if (route.url.startsWith(DASHBOARD_PATH)) {
      route.helmet = { contentSecurityPolicy: DASHBOARD_CSP }
    }
  })
  // The dashboard's HTML without its links to other sites; its CSP would refuse them anyway.
  fastify.addHook('onSend', async (request, reply, payload) => {
    const page =
      typeof payload === 'string' &&
      request.url.startsWith(DASHBOARD_PATH) &&
      String(reply.getHeader('content-type')).startsWith('text/html')
    return page ? payload.replace(FOREIGN_LINK, '') : payload
  })
  await fastify.register(helmet, {
    contentSecurityPolicy: API_CSP,
    strictTransportSecurity: false,
    // No-referrer: a link out of the page or the docs does not carry the api's URL along.
    referrerPolicy: { policy: 'no-referrer' },
    // Others' pages may not embed the api's responses (`<img>`, `<script>`); CORS requests
    // from the origins in API_ALLOWED_ORIGINS are unaffected (CORP applies to no-cors loads).
    crossOriginResourcePolicy: { policy: 'same-origin' },
    xFrameOptions: { action: 'deny' },
  })
}

export default fp(securityHeaders, { name: 'security-headers', fastify: '5.x' })

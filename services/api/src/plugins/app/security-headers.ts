import helmet from '@fastify/helmet'
import type { FastifyInstance, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { DASHBOARD_PATH } from '../../routes/admin/queues.ts'

// Security headers on every response. Most of the API answers JSON or NDJSON, which a browser
// should never render, sniff into a script, frame, or load from another site's page; the policy
// below says so. Two surfaces serve HTML and bring their own, stricter or wider, CSP: the chat
// page (routes/page, `PAGE_CSP`) and Swagger UI at /docs (@fastify/swagger-ui's staticCSP).
// Helmet writes its headers when a request arrives; theirs are set on the reply as it is sent
// and replace helmet's, so a response carries exactly one Content-Security-Policy, never two
// that a browser would combine. The queue dashboard (bull-board, admin only) is an app of its
// own: it gets a CSP that lets its scripts, styles (inline ones included, which its markup
// uses) and API calls load from the api itself.
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

/** bull-board's page: its own files and inline styles, Google's fonts, nothing else. */
export const DASHBOARD_CSP = {
  useDefaults: false,
  directives: {
    defaultSrc: ["'self'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'", "'unsafe-inline'", 'https://fonts.googleapis.com'],
    fontSrc: ["'self'", 'https://fonts.gstatic.com', 'data:'],
    imgSrc: ["'self'", 'data:'],
    connectSrc: ["'self'"],
    objectSrc: ["'none'"],
    baseUri: ["'self'"],
    formAction: ["'self'"],
    frameAncestors: ["'none'"],
  },
}

async function securityHeaders(fastify: FastifyInstance) {
  // Before helmet's own onRoute hook, which reads a route's `helmet` options.
  fastify.addHook('onRoute', (route: RouteOptions) => {
    if (route.url.startsWith(DASHBOARD_PATH)) {
      route.helmet = { contentSecurityPolicy: DASHBOARD_CSP }
    }
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

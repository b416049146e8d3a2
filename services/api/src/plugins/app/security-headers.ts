import helmet from '@fastify/helmet'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

// Security headers on every response. Most of the API answers JSON or NDJSON, which a browser
// should never render, sniff into a script, frame, or load from another site's page; the policy
// below says so. Two surfaces serve HTML and bring their own, stricter or wider, CSP: the chat
// page (routes/page, `PAGE_CSP`) and Swagger UI at /docs (@fastify/swagger-ui's staticCSP).
// Helmet writes its headers when a request arrives; theirs are set on the reply as it is sent
// and replace helmet's, so a response carries exactly one Content-Security-Policy, never two
// that a browser would combine.
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

async function securityHeaders(fastify: FastifyInstance) {
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

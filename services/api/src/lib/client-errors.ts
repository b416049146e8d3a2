import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import { type ErrorBody, ErrorCode } from '@confluence-bot/shared'

// What Node itself refuses before a request reaches Fastify (a request that is not valid HTTP,
// headers too large, a request that did not arrive in time) is answered in the API's error
// shape too, on the raw socket, which is then closed.

function bodyFor(err: NodeJS.ErrnoException): ErrorBody {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return {
      error: ErrorCode.requestTimeout,
      message: 'The request did not arrive within REQUEST_TIMEOUT_MS',
      statusCode: 408,
    }
  }
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    return {
      error: ErrorCode.headersTooLarge,
      message: 'The request headers are too large',
      statusCode: 431,
    }
  }
  return {
    error: ErrorCode.malformedRequest,
    message: `The request is not valid HTTP/1.1 (${err.code})`,
    statusCode: 400,
  }
}

export function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  // A reset connection (ECONNRESET) is destroyed already: nobody is left to answer.
  if (socket.destroyed) return
  const answer = bodyFor(err)
  const status = answer.statusCode
  const body = JSON.stringify(answer)
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy()
}

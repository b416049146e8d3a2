import type { FastifyInstance } from 'fastify'

// / — the chat page (the bot UI) and its static assets.
export default async function chatPage(_fastify: FastifyInstance) {}

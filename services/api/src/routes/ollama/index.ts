import type { FastifyInstance } from 'fastify'

// /ollama — an Ollama-compatible API (api/chat, generate, tags, show, embed, version, ps); grounded under a model alias.
export default async function ollamaCompatible(_fastify: FastifyInstance) {}

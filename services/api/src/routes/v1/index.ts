import type { FastifyInstance } from 'fastify'

// /v1 — OpenAI-compatible chat completions, models and embeddings, grounded like /api/chat.
export default async function openaiCompatible(_fastify: FastifyInstance) {}

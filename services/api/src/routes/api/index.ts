import type { FastifyInstance } from 'fastify'
import chat from './chat.ts'
import generate from './generate.ts'
import health from './health.ts'
import models from './models.ts'
import pull from './pull.ts'

// /api: health is open; everything else needs a reader key, and model pulls an admin key.
// Each role is an encapsulated scope with its own onRequest hook.
export default async function api(fastify: FastifyInstance) {
  await fastify.register(health)

  await fastify.register(async (readers) => {
    readers.addHook('onRequest', readers.requireRole('reader'))
    await readers.register(chat)
    await readers.register(generate)
    await readers.register(models)
  })

  await fastify.register(async (admins) => {
    admins.addHook('onRequest', admins.requireRole('admin'))
    await admins.register(pull)
  })
}

import type { FastifyInstance } from 'fastify'
import chat from './chat.ts'
import conversations from './conversations.ts'
import generate from './generate.ts'
import health from './health.ts'
import jobs from './jobs.ts'
import me from './me.ts'
import models from './models.ts'
import modelsImport from './models-import.ts'
import pull from './pull.ts'
import search from './search.ts'
import sources from './sources.ts'
import spaces from './spaces.ts'

// /api: health is open; everything else needs a reader key; model pulls, sources and jobs
// need an admin key.
// Each role is an encapsulated scope with its own onRequest hook.
export default async function api(fastify: FastifyInstance) {
  await fastify.register(health)

  await fastify.register(async (readers) => {
    readers.addHook('onRequest', readers.requireRole('reader'))
    await readers.register(chat)
    await readers.register(conversations)
    await readers.register(generate)
    await readers.register(me)
    await readers.register(models)
    await readers.register(search)
    await readers.register(spaces)
  })

  await fastify.register(async (admins) => {
    admins.addHook('onRequest', admins.requireRole('admin'))
    await admins.register(pull)
    await admins.register(modelsImport)
    await admins.register(sources)
    await admins.register(jobs)
  })
}

import type { FastifyInstance } from 'fastify'

// /mcp — the Model Context Protocol server (Streamable HTTP): tools search, ask and get_page.
export default async function mcp(_fastify: FastifyInstance) {}

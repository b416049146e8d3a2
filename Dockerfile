# One Dockerfile, two images (the k8s manifests name them confluence-bot-api / -worker):
#   docker build --target api    -t confluence-bot-api .
#   docker build --target worker -t confluence-bot-worker .
# The build stage compiles TypeScript to dist/ with `tsc -b`; the runtime images hold only the
# compiled service and its production dependencies, run as the unprivileged `node` user.
FROM node:24-bookworm-slim AS build
WORKDIR /src
RUN npm install --global pnpm@10.34.8
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml ./
COPY packages/shared/package.json packages/shared/
COPY packages/index/package.json packages/index/
COPY services/api/package.json services/api/
COPY services/worker/package.json services/worker/
RUN pnpm install --frozen-lockfile
COPY tsconfig.base.json ./
COPY packages packages
COPY services services
RUN pnpm exec tsc -b packages/shared packages/index services/api services/worker \
 && pnpm --filter @confluence-bot/api deploy --prod --legacy /out/api \
 && pnpm --filter @confluence-bot/worker deploy --prod --legacy /out/worker

FROM node:24-bookworm-slim AS runtime
WORKDIR /app
USER node

FROM runtime AS api
COPY --from=build --chown=node:node /out/api /app
ENV HOST=0.0.0.0 PORT=3000
EXPOSE 3000
CMD ["node", "dist/server.js"]

FROM runtime AS worker
COPY --from=build --chown=node:node /out/worker /app
ENV WORKER_HEALTH_HOST=0.0.0.0 WORKER_HEALTH_PORT=3001
# The worker's memory settings (packages/shared/src/config/runtime.ts has the figures).
ENV NODE_OPTIONS=--max-semi-space-size=8 MALLOC_ARENA_MAX=2
EXPOSE 3001
CMD ["node", "dist/main.js"]

# One Dockerfile, two images (the k8s manifests name them confluence-bot-api / -worker):
#   docker build --target api    -t confluence-bot-api .
#   docker build --target worker -t confluence-bot-worker .
# linux/amd64 only: LanceDB's native binary for the version in use (0.37.1) is published for
# x64 alone (its linux-arm64 builds stop at 0.31.0), so the build refuses other platforms below
# instead of shipping an image that dies at import (k8s/README.md, "Images"). From a Mac or an
# arm64 machine: docker buildx build --platform linux/amd64 --target api -t REGISTRY/api:TAG --push .
# The build stage compiles TypeScript to dist/ with `tsc -b`; the runtime images hold only the
# compiled service and its production dependencies, run as the unprivileged `node` user.
#
# The base is pinned to a patch release, the Node.js the project runs on (package.json's `node`).
# To pin its digest as well (reproducible builds), resolve it where there is a registry:
#   docker buildx imagetools inspect node:24.9.0-bookworm-slim   # "Digest: sha256:…"
# and build with --build-arg NODE_IMAGE=node:24.9.0-bookworm-slim@sha256:<that digest>.
ARG NODE_IMAGE=node:24.9.0-bookworm-slim

FROM ${NODE_IMAGE} AS build
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
# Each deploy links every workspace package, the compiler and the sources: keep only what the
# service runs (its dist/, the shared packages' dist/, production dependencies).
RUN prune() { \
      out=$1 self=$2 other=$3; \
      rm -rf "$out/node_modules/@confluence-bot/$other" "$out/node_modules/.pnpm/@confluence-bot+$other@"* \
        "$out/node_modules/@confluence-bot/$self" "$out/node_modules/.pnpm/@confluence-bot+$self@"* \
        "$out/src" "$out"/tsconfig*.json "$out/node_modules/.pnpm/typescript@"*; \
      find "$out/node_modules/.pnpm" \( -path '*/node_modules/@confluence-bot/*/src' \
        -o -path '*/node_modules/@confluence-bot/*/tsconfig*.json' \) -prune -exec rm -rf {} +; \
      find "$out" -name '*.tsbuildinfo' -delete; \
    } \
 && prune /out/api api worker \
 && prune /out/worker worker api
# Both services load LanceDB's native binding: fail the build here, with the reason, on a platform
# it has no binary for.
RUN cd /out/worker && node -e "import('@lancedb/lancedb').then((m) => m.connect('memory://')).catch(() => { \
      console.error('LanceDB has no native binary for linux/' + process.arch + ': build with --platform linux/amd64'); \
      process.exit(1) })"

FROM ${NODE_IMAGE} AS runtime
WORKDIR /app
USER node

FROM runtime AS api
COPY --from=build --chown=node:node /out/api /app
ENV HOST=0.0.0.0 PORT=3000
EXPOSE 3000
# For docker/compose; Kubernetes ignores it and uses the Deployment's probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/api/health/live`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/server.js"]

FROM runtime AS worker
COPY --from=build --chown=node:node /out/worker /app
ENV WORKER_HEALTH_HOST=0.0.0.0 WORKER_HEALTH_PORT=3001
# The worker's memory settings (packages/shared/src/config/runtime.ts has the figures).
ENV NODE_OPTIONS=--max-semi-space-size=8 MALLOC_ARENA_MAX=2
EXPOSE 3001
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.WORKER_HEALTH_PORT}/health/live`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/main.js"]

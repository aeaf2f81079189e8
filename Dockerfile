# syntax=docker/dockerfile:1
# Multi-stage build: compile TypeScript with the dev toolchain, ship only dist/ and
# production dependencies, run as the unprivileged `node` user.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bench ./bench
RUN npx tsc -p tsconfig.build.json \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    LISTEN_ADDRESS=0.0.0.0:50051 \
    METRICS_ADDRESS=0.0.0.0:9464
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./package.json
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
# The exact FileDescriptorSet `buf build` produced, served by server reflection.
COPY --from=build --chown=node:node /app/src/generated/descriptors.binpb ./src/generated/descriptors.binpb
USER node
EXPOSE 50051 9464
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 CMD ["node", "dist/src/healthcheck.js"]
# Migrations are applied on start (MIGRATE_ON_START=true); replicas serialise on an advisory lock.
CMD ["node", "dist/src/main.js"]

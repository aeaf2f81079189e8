/**
 * The typed container: wires config, the ORM, Redis and the features, and owns their
 * lifecycle. main.ts only starts it; tests start one per server they need.
 */
import { ServerCredentials } from "@grpc/grpc-js";
import type { MikroORM } from "@mikro-orm/postgresql";
import type { Logger } from "pino";
import { auditHandlers } from "./audit/handlers";
import { Authorizer } from "./authorization/authorizer";
import { authorizationHandlers } from "./authorization/handlers";
import { LastUsedRecorder } from "./authorization/last-used";
import { InProcessRevocationStore, RedisRevocationStore, type RevocationStore } from "./authorization/revocation-store";
import { postgresTokenLookup, recentRevocations } from "./authorization/token-lookup";
import type { Config } from "./config";
import { type EmbeddedDatabase, startEmbeddedDatabase } from "./db/embedded";
import { migrate, openOrm } from "./db/orm";
import { addReflection } from "./grpc/reflection";
import { bind, buildServer } from "./grpc/server";
import type { UnaryDeps } from "./grpc/unary";
import { HealthMonitor } from "./observability/health";
import { Metrics, serveMetrics } from "./observability/metrics";
import { readFileSync } from "node:fs";
import { serviceAccountHandlers } from "./service-accounts/handlers";
import { createLogger } from "./shared/logger";
import { tokenPolicyHandlers } from "./token-policies/handlers";
import { tokenHandlers } from "./tokens/handlers";

export interface Container {
  readonly config: Config;
  readonly log: Logger;
  readonly orm: MikroORM;
  readonly revocations: RevocationStore;
  readonly authorizer: Authorizer;
  readonly lastUsed: LastUsedRecorder;
  readonly health: HealthMonitor;
  readonly metrics: Metrics;
  /** The address the gRPC server listens on (with the real port when 0 was asked). */
  readonly address: string;
  /** Where /metrics is served, when METRICS_ADDRESS is set. */
  readonly metricsAddress: string | undefined;
  stop(): Promise<void>;
}

export interface ContainerOptions {
  log?: Logger;
}

export async function startContainer(config: Config, options: ContainerOptions = {}): Promise<Container> {
  const log = options.log ?? createLogger(config.logLevel);
  const stack: (() => Promise<void>)[] = [];
  let unwinding: Promise<void> | undefined;
  const unwind = () =>
    (unwinding ??= (async () => {
      for (const fn of stack.reverse()) await fn().catch((err: Error) => log.error({ err }, "error while stopping"));
    })());

  try {
    let embedded: EmbeddedDatabase | undefined;
    let databaseUrl = config.databaseUrl;
    if (!databaseUrl) {
      embedded = await startEmbeddedDatabase(config.embeddedDataDir);
      stack.push(() => embedded!.stop());
      databaseUrl = embedded.url;
      log.info({ data_dir: config.embeddedDataDir }, "DATABASE_URL not set: using the embedded PostgreSQL (PGlite)");
    }
    const orm = await openOrm({
      url: databaseUrl,
      poolMax: embedded ? 1 : config.databasePoolMax,
      timeoutMs: config.databaseTimeoutMs,
      logger: (message) => log.debug({ component: "mikro-orm" }, message),
    });
    stack.push(() => orm.close(true));
    if (config.migrateOnStart) {
      const applied = await migrate(orm, embedded ? undefined : databaseUrl);
      if (applied.length > 0) log.info({ migrations: applied }, "migrations applied");
    }

    const revocations: RevocationStore = config.redisUrl
      ? new RedisRevocationStore({
          url: config.redisUrl,
          timeoutMs: config.redisTimeoutMs,
          keyPrefix: config.redisKeyPrefix,
          log,
          loadRevokedSince: (since) => recentRevocations(orm, since),
        })
      : new InProcessRevocationStore();
    if (!config.redisUrl) log.warn("REDIS_URL not set: revocations are kept in this process; run a single replica only");
    await revocations.start();
    stack.push(() => revocations.close());

    const lastUsed = new LastUsedRecorder(orm, log, config.lastUsedFlushIntervalMs);
    lastUsed.start();
    stack.push(() => lastUsed.stop());

    let authorizer: Authorizer | undefined;
    const metrics = new Metrics({ orm, cacheSize: () => authorizer?.cache.size ?? 0, revocationTrusted: () => revocations.trusted() });
    authorizer = new Authorizer({
      lookup: postgresTokenLookup(orm),
      revocations,
      lastUsed,
      cacheMaxEntries: config.tokenCacheMaxEntries,
      cacheTtlMs: config.tokenCacheTtlMs,
      negativeCacheMaxEntries: config.negativeCacheMaxEntries,
      lookupTimeoutMs: Math.min(config.databaseTimeoutMs, 1000),
      metrics,
    });

    const health = new HealthMonitor({
      orm,
      revocationTrusted: () => revocations.trusted(),
      log,
      intervalMs: config.healthCheckIntervalMs,
      timeoutMs: Math.min(config.databaseTimeoutMs, 1000),
    });
    let draining = false;
    const deps: UnaryDeps = {
      orm,
      log,
      observer: metrics,
      callerPolicy: config.tls ? config.callerPolicy : undefined,
      isDraining: () => draining,
    };
    const server = buildServer(
      {
        serviceAccounts: serviceAccountHandlers({ ...deps, revocations }),
        tokens: tokenHandlers({ ...deps, revocations }),
        audit: auditHandlers(deps),
        authorization: authorizationHandlers(deps, authorizer),
        tokenPolicies: tokenPolicyHandlers(deps),
      },
      {
        "grpc.max_receive_message_length": config.maxReceiveMessageBytes,
        "grpc.max_concurrent_streams": config.maxConcurrentStreams,
        "grpc.keepalive_time_ms": config.keepaliveTimeMs,
        "grpc.keepalive_timeout_ms": config.keepaliveTimeoutMs,
        "grpc.max_connection_idle_ms": config.maxConnectionIdleMs,
      },
    );
    addReflection(server);
    health.addToServer(server);
    const credentials = config.tls
      ? ServerCredentials.createSsl(
          readFileSync(config.tls.clientCaFile),
          [{ cert_chain: readFileSync(config.tls.certFile), private_key: readFileSync(config.tls.keyFile) }],
          true,
        )
      : ServerCredentials.createInsecure();
    if (!config.tls && config.allowInsecureNonLoopback)
      log.warn(
        { listen_address: config.listenAddress },
        "!!! PLAINTEXT gRPC WITHOUT CLIENT AUTHENTICATION (ALLOW_INSECURE_NON_LOOPBACK=true): anyone who can reach this address can mint and check tokens. Never do this in production. !!!",
      );
    const port = await bind(server, config.listenAddress, credentials);
    await health.start();
    stack.push(async () => health.stop());
    let metricsServer: { address: string; close(): Promise<void> } | undefined;
    if (config.metricsAddress) {
      metricsServer = await serveMetrics(metrics, config.metricsAddress);
      stack.push(() => metricsServer!.close());
    }
    stack.push(
      () =>
        new Promise<void>((resolve) => {
          // Graceful: health already says NOT_SERVING; new calls get UNAVAILABLE; in-flight
          // calls get up to SHUTDOWN_GRACE_MS to finish.
          draining = true;
          const timer = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, config.shutdownGraceMs);
          server.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        }),
    );
    const address = config.listenAddress.replace(/:\d+$/, `:${port}`);
    log.info(
      { address, tls: Boolean(config.tls), metrics_address: metricsServer?.address, revocation_store: revocations.kind },
      `pokerworks-identity listening on ${address}; try: grpcurl ${config.tls ? "-cacert ca.pem -cert client.pem -key client-key.pem" : "-plaintext"} ${address} list`,
    );
    // Shut down in reverse order of start: health NOT_SERVING, drain the server, metrics,
    // last-used flush, Redis, ORM, embedded DB.
    const stop = async () => {
      health.drain();
      await unwind();
    };
    return { config, log, orm, revocations, authorizer, lastUsed, health, metrics, address, metricsAddress: metricsServer?.address, stop };
  } catch (err) {
    await unwind();
    throw err;
  }
}

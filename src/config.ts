import { type CallerPolicy, parseCallerPolicy } from "./grpc/caller-policy";

/**
 * Configuration, read from the environment once at start and validated. A bad value stops
 * the process with a message naming the variable. Every variable is documented in README.md.
 */

export interface Config {
  listenAddress: string;
  /** Absent: an embedded PostgreSQL (PGlite) keeps its data in `embeddedDataDir`. */
  databaseUrl: string | undefined;
  databasePoolMax: number;
  databaseTimeoutMs: number;
  embeddedDataDir: string;
  /** Absent: an in-process revocation store (single replica only). */
  redisUrl: string | undefined;
  redisTimeoutMs: number;
  /** Prefix (with a hash tag) of every Redis key, so several deployments can share a Redis. */
  redisKeyPrefix: string;
  tokenCacheMaxEntries: number;
  tokenCacheTtlMs: number;
  negativeCacheMaxEntries: number;
  lastUsedFlushIntervalMs: number;
  logLevel: string;
  metricsAddress: string | undefined;
  tls: { certFile: string; keyFile: string; clientCaFile: string } | undefined;
  callerPolicy: CallerPolicy;
  healthCheckIntervalMs: number;
  allowInsecureNonLoopback: boolean;
  shutdownGraceMs: number;
  maxReceiveMessageBytes: number;
  maxConcurrentStreams: number;
  /** Ping a connection after this long without activity; close it when the ping is not answered. */
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  /** Close (GOAWAY) a connection that has had no call in flight for this long. */
  maxConnectionIdleMs: number;
  migrateOnStart: boolean;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`Invalid configuration: ${variable} ${message}`);
  }
}

type Env = Record<string, string | undefined>;

function str(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

function int(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = str(env, name);
  if (raw === undefined) return def;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got '${raw}'`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function bool(env: Env, name: string, def: boolean): boolean {
  const raw = str(env, name);
  if (raw === undefined) return def;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(name, `must be true or false, got '${raw}'`);
}

/** host:port with a numeric port; host may be an IPv4/IPv6 address ([::1]) or a name. */
function address(env: Env, name: string, def: string | undefined): string | undefined {
  const raw = str(env, name) ?? def;
  if (raw === undefined) return undefined;
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(raw);
  if (!m || Number(m[2]) > 65535) throw new ConfigError(name, `must be host:port (for example 127.0.0.1:50051), got '${raw}'`);
  return raw;
}

function url(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, `must be a URL (${protocols.join(", ")})`);
  }
  if (!protocols.includes(parsed.protocol)) throw new ConfigError(name, `must use one of ${protocols.join(", ")}, got '${parsed.protocol}'`);
  return raw;
}

function redisKeyPrefix(env: Env): string {
  const raw = str(env, "REDIS_KEY_PREFIX") ?? "pw-identity";
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(raw)) throw new ConfigError("REDIS_KEY_PREFIX", `must be 1 to 64 letters, digits or _.:-, got '${raw}'`);
  return `{${raw}}:`;
}

export const DEFAULT_CALLER_POLICY =
  "console-backend=ServiceAccountService,TokenService,AuditService,OrganizationPolicyService,AuthorizationService;" +
  "secret-scanner=TokenService.ReportLeakedTokens;*=AuthorizationService";

function callerPolicy(env: Env): CallerPolicy {
  const raw = str(env, "CALLER_POLICY") ?? DEFAULT_CALLER_POLICY;
  try {
    return parseCallerPolicy(raw);
  } catch (err) {
    throw new ConfigError("CALLER_POLICY", (err as Error).message);
  }
}

/** 127.0.0.0/8, ::1 and localhost. */
export function isLoopback(hostPort: string): boolean {
  const host = hostPort.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export function loadConfig(env: Env = process.env): Config {
  const logLevel = str(env, "LOG_LEVEL") ?? "info";
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError("LOG_LEVEL", `must be one of ${LOG_LEVELS.join(", ")}, got '${logLevel}'`);

  const certFile = str(env, "TLS_CERT_FILE");
  const keyFile = str(env, "TLS_KEY_FILE");
  const clientCaFile = str(env, "TLS_CLIENT_CA_FILE");
  const tlsSet = [certFile, keyFile, clientCaFile].filter((x) => x !== undefined).length;
  if (tlsSet !== 0 && tlsSet !== 3) {
    const missing = !certFile ? "TLS_CERT_FILE" : !keyFile ? "TLS_KEY_FILE" : "TLS_CLIENT_CA_FILE";
    throw new ConfigError(missing, "must be set together with TLS_CERT_FILE, TLS_KEY_FILE and TLS_CLIENT_CA_FILE (mutual TLS needs all three)");
  }

  const listenAddress = address(env, "LISTEN_ADDRESS", "127.0.0.1:50051")!;
  const allowInsecureNonLoopback = bool(env, "ALLOW_INSECURE_NON_LOOPBACK", false);
  if (tlsSet === 0 && !isLoopback(listenAddress) && !allowInsecureNonLoopback)
    throw new ConfigError(
      "LISTEN_ADDRESS",
      `is '${listenAddress}', which is not a loopback address, and TLS is off: set TLS_CERT_FILE, TLS_KEY_FILE and TLS_CLIENT_CA_FILE, ` +
        "or set ALLOW_INSECURE_NON_LOOPBACK=true to serve plaintext anyway (never in production)",
    );

  return {
    listenAddress,
    databaseUrl: url(env, "DATABASE_URL", ["postgres:", "postgresql:"]),
    databasePoolMax: int(env, "DATABASE_POOL_MAX", 10, 1, 1000),
    databaseTimeoutMs: int(env, "DATABASE_TIMEOUT_MS", 2000, 50, 60_000),
    embeddedDataDir: str(env, "EMBEDDED_DATA_DIR") ?? ".data/pglite",
    redisUrl: url(env, "REDIS_URL", ["redis:", "rediss:", "redis+sentinel:", "redis+cluster:"]),
    redisTimeoutMs: int(env, "REDIS_TIMEOUT_MS", 250, 10, 10_000),
    redisKeyPrefix: redisKeyPrefix(env),
    tokenCacheMaxEntries: int(env, "TOKEN_CACHE_MAX_ENTRIES", 100_000, 0, 10_000_000),
    tokenCacheTtlMs: int(env, "TOKEN_CACHE_TTL_MS", 10_000, 0, 300_000),
    negativeCacheMaxEntries: int(env, "NEGATIVE_CACHE_MAX_ENTRIES", 50_000, 0, 10_000_000),
    lastUsedFlushIntervalMs: int(env, "LAST_USED_FLUSH_INTERVAL_MS", 5_000, 10, 60_000),
    logLevel,
    metricsAddress: address(env, "METRICS_ADDRESS", undefined),
    tls: certFile && keyFile && clientCaFile ? { certFile, keyFile, clientCaFile } : undefined,
    callerPolicy: callerPolicy(env),
    healthCheckIntervalMs: int(env, "HEALTH_CHECK_INTERVAL_MS", 2_000, 50, 60_000),
    allowInsecureNonLoopback,
    shutdownGraceMs: int(env, "SHUTDOWN_GRACE_MS", 10_000, 0, 600_000),
    maxReceiveMessageBytes: int(env, "GRPC_MAX_RECEIVE_MESSAGE_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024),
    maxConcurrentStreams: int(env, "GRPC_MAX_CONCURRENT_STREAMS", 1000, 1, 100_000),
    keepaliveTimeMs: int(env, "GRPC_KEEPALIVE_TIME_MS", 60_000, 100, 86_400_000),
    keepaliveTimeoutMs: int(env, "GRPC_KEEPALIVE_TIMEOUT_MS", 20_000, 100, 600_000),
    maxConnectionIdleMs: int(env, "GRPC_MAX_CONNECTION_IDLE_MS", 300_000, 100, 86_400_000),
    migrateOnStart: bool(env, "MIGRATE_ON_START", true),
  };
}

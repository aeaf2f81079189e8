/**
 * Revocation markers: how a revocation committed through one replica reaches every
 * replica's next Authorize.
 *
 * Revoke commits in PostgreSQL, then writes a marker per revoked token and service account
 * to Redis, and returns only when Redis acknowledged them. Authorize answers from its
 * in-process cache of token records but, before it decides for an identified token, reads
 * the markers and the epoch in one pipelined round trip. Markers live far longer than any
 * cache entry (MARKER_TTL_MS vs. TOKEN_CACHE_TTL_MS <= 5 min), so a record cached before a
 * revocation is always caught by a marker, and one loaded after it carries the revocation.
 *
 * The epoch key is written after a rebuild of the markers from PostgreSQL. Redis keeps
 * nothing on disk: when it comes back empty the epoch is missing, replicas distrust the
 * markers and decide from PostgreSQL until one of them has rebuilt the markers and written
 * a new epoch. A replica that sees the epoch change drops its cache.
 */
import Redis, { Cluster, type RedisOptions } from "ioredis";
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { UnavailableError } from "../shared/errors";
import type { RevocationPublisher, Revoked } from "./revocation-publisher";

export const MARKER_TTL_MS = 60 * 60 * 1000;
/** Rebuild looks back further than a marker lives, so nothing a marker would catch is missed. */
export const REBUILD_WINDOW_MS = MARKER_TTL_MS + 5 * 60 * 1000;
const REBUILD_LOCK_MS = 10_000;
/** KEYS: lock, epoch; ARGV: lock id, new epoch. Sets the epoch and releases the lock only if we still hold it. */
const COMMIT_EPOCH = `if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[2], ARGV[2]); redis.call('del', KEYS[1]); return 1 end return 0`;
/** KEYS: lock; ARGV: lock id, ttl ms. Keeps a long rebuild's lock alive. */
const EXTEND_LOCK = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0`;
/** KEYS: lock; ARGV: lock id. */
const RELEASE_LOCK = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0`;

export type MarkerCheck =
  | {
      trusted: true;
      tokenRevoked: boolean;
      serviceAccountRevoked: boolean;
      epochChanged: boolean;
      /** An opaque id of the last change (rotation) to the token's record, null if none. */
      changed: string | null;
    }
  | { trusted: false };

export interface RevocationStore extends RevocationPublisher {
  readonly kind: "redis" | "in-process";
  /** Are this token or its service account marked revoked? Untrusted when that can't be known. */
  check(tokenId: string, serviceAccountId: string): Promise<MarkerCheck>;
  /** Whether markers can be trusted right now (health). */
  trusted(): boolean;
  /** Called when cached records can no longer be relied on (epoch changed). */
  onInvalidate(listener: () => void): void;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Single replica without Redis: markers live in this process. */
export class InProcessRevocationStore implements RevocationStore {
  readonly kind = "in-process" as const;
  private readonly tokens = new Set<string>();
  private readonly accounts = new Set<string>();
  private readonly changed = new Map<string, string>();
  async publish(revoked: Revoked): Promise<void> {
    for (const id of revoked.tokenIds) this.tokens.add(id);
    for (const id of revoked.serviceAccountIds) this.accounts.add(id);
    for (const id of revoked.changedTokenIds ?? []) this.changed.set(id, randomUUID());
  }
  async check(tokenId: string, serviceAccountId: string): Promise<MarkerCheck> {
    return {
      trusted: true,
      tokenRevoked: this.tokens.has(tokenId),
      serviceAccountRevoked: this.accounts.has(serviceAccountId),
      epochChanged: false,
      changed: this.changed.get(tokenId) ?? null,
    };
  }
  trusted(): boolean {
    return true;
  }
  onInvalidate(): void {}
  async start(): Promise<void> {}
  async close(): Promise<void> {}
}

export interface RedisStoreOptions {
  url: string;
  timeoutMs: number;
  log: Logger;
  /** Revocations committed since a time, read from PostgreSQL, for a rebuild. */
  loadRevokedSince: (since: Date) => Promise<Revoked>;
  keyPrefix?: string;
  /** How often the epoch is polled in the background (for health and quick rebuilds). */
  pollIntervalMs?: number;
}

/**
 * REDIS_URL forms: `redis://[:password@]host:port[/db]` (or `rediss://` for TLS),
 * `redis+sentinel://[:password@]host1:26379,host2:26379/master-name` and
 * `redis+cluster://[:password@]host1:6379,host2:6379`. All keys share one hash tag so
 * the pipelined check works on a cluster too.
 */
export function createRedisClient(url: string, options: RedisOptions): Redis | Cluster {
  const parsed = new URL(url);
  const password = parsed.password ? decodeURIComponent(parsed.password) : undefined;
  const username = parsed.username ? decodeURIComponent(parsed.username) : undefined;
  if (parsed.protocol === "redis+sentinel:") {
    // URL's own parser only keeps the first host; read the host list from the raw string.
    const raw = url.slice("redis+sentinel://".length).replace(/^[^@]*@/, "");
    const [hostList, name] = raw.split("/");
    const sentinels = hostList!.split(",").map((h) => ({ host: h.split(":")[0]!, port: Number(h.split(":")[1] ?? 26379) }));
    return new Redis({ ...options, sentinels, name: name || "mymaster", password, username });
  }
  if (parsed.protocol === "redis+cluster:") {
    const raw = url.slice("redis+cluster://".length).replace(/^[^@]*@/, "").split("/")[0]!;
    const nodes = raw.split(",").map((h) => ({ host: h.split(":")[0]!, port: Number(h.split(":")[1] ?? 6379) }));
    return new Cluster(nodes, { redisOptions: { ...options, password, username }, enableOfflineQueue: false });
  }
  return new Redis(url, options);
}

export class RedisRevocationStore implements RevocationStore {
  readonly kind = "redis" as const;
  private readonly client: Redis | Cluster;
  private readonly prefix: string;
  private knownEpoch: string | null = null;
  private lastCheckOk = false;
  private rebuilding: Promise<void> | null = null;
  private readonly listeners: (() => void)[] = [];
  private poller: NodeJS.Timeout | undefined;
  private readonly untrusted: MarkerCheck = { trusted: false };

  constructor(private readonly opts: RedisStoreOptions) {
    this.prefix = opts.keyPrefix ?? "{pw-identity}:";
    this.client = createRedisClient(opts.url, {
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      commandTimeout: opts.timeoutMs,
      connectTimeout: Math.max(opts.timeoutMs * 4, 1000),
      maxRetriesPerRequest: 0,
      lazyConnect: true,
      retryStrategy: (attempt) => Math.min(50 * attempt, 1000),
    });
    this.client.on("error", (err: Error) => opts.log.debug({ err: err.message }, "redis error"));
    this.client.on("ready", () => opts.log.info("redis connected"));
  }

  private get epochKey() {
    return `${this.prefix}revocations:epoch`;
  }
  private tokenKey(id: string) {
    return `${this.prefix}rv:tok:${id}`;
  }
  private changedKey(id: string) {
    return `${this.prefix}rv:chg:${id}`;
  }
  private accountKey(id: string) {
    return `${this.prefix}rv:sa:${id}`;
  }

  async start(): Promise<void> {
    await this.client.connect().catch((err: Error) => this.opts.log.warn({ err: err.message }, "redis not reachable at start; deciding from PostgreSQL until it is"));
    await this.poll();
    // A fresh (or emptied) Redis: rebuild before serving, so the replica starts trusted.
    if (!this.lastCheckOk && this.client.status === "ready") {
      await this.rebuild();
      await this.poll();
    }
    this.poller = setInterval(() => void this.poll(), this.opts.pollIntervalMs ?? 1000);
    this.poller.unref();
  }

  private async poll(): Promise<void> {
    if (this.client.status !== "ready") {
      this.lastCheckOk = false;
      return;
    }
    try {
      this.observeEpoch(await this.client.get(this.epochKey));
    } catch {
      this.lastCheckOk = false;
    }
  }

  /** Records what the epoch is now; returns whether the markers can be trusted. */
  private observeEpoch(epoch: string | null): { trusted: boolean; changed: boolean } {
    if (epoch === null) {
      this.lastCheckOk = false;
      void this.rebuild();
      return { trusted: false, changed: false };
    }
    const changed = this.knownEpoch !== null && this.knownEpoch !== epoch;
    if (this.knownEpoch !== epoch) {
      this.knownEpoch = epoch;
      for (const l of this.listeners) l();
    }
    this.lastCheckOk = true;
    return { trusted: true, changed };
  }

  /** Checks asked for in this tick; sent together as one MGET on the next tick. */
  private batch: { tokenId: string; serviceAccountId: string; resolve: (r: MarkerCheck) => void }[] | null = null;

  /**
   * Every check asked for in the same tick goes to Redis as one MGET (the epoch, then a token
   * and an account key per check): one command, one write, one reply, whatever the
   * concurrency. The MGET is sent after every call in the batch began, so each call sees
   * every marker written before it began. All keys share the hash tag (Cluster-safe).
   */
  check(tokenId: string, serviceAccountId: string): Promise<MarkerCheck> {
    if (this.client.status !== "ready") {
      this.lastCheckOk = false;
      return Promise.resolve(this.untrusted);
    }
    return new Promise((resolve) => {
      if (this.batch === null) {
        this.batch = [];
        process.nextTick(() => void this.flushChecks());
      }
      this.batch.push({ tokenId, serviceAccountId, resolve });
    });
  }

  private async flushChecks(): Promise<void> {
    const batch = this.batch!;
    this.batch = null;
    const keys = new Array<string>(1 + 3 * batch.length);
    keys[0] = this.epochKey;
    for (let i = 0; i < batch.length; i++) {
      keys[1 + 3 * i] = this.tokenKey(batch[i]!.tokenId);
      keys[2 + 3 * i] = this.accountKey(batch[i]!.serviceAccountId);
      keys[3 + 3 * i] = this.changedKey(batch[i]!.tokenId);
    }
    let results: (string | null)[];
    try {
      results = await this.client.mget(keys);
    } catch {
      this.lastCheckOk = false;
      for (const b of batch) b.resolve(this.untrusted);
      return;
    }
    const before = this.knownEpoch;
    const epoch = this.observeEpoch(results[0] ?? null);
    const epochChanged = before !== this.knownEpoch;
    for (let i = 0; i < batch.length; i++)
      batch[i]!.resolve(
        epoch.trusted
          ? {
              trusted: true,
              tokenRevoked: results[1 + 3 * i] != null,
              serviceAccountRevoked: results[2 + 3 * i] != null,
              epochChanged,
              changed: results[3 + 3 * i] ?? null,
            }
          : this.untrusted,
      );
  }

  async publish(revoked: Revoked): Promise<void> {
    if (revoked.tokenIds.length === 0 && revoked.serviceAccountIds.length === 0 && !revoked.changedTokenIds?.length) return;
    try {
      await this.writeMarkers(revoked);
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message }, "revocation committed but its markers could not be written to Redis");
      throw new UnavailableError(
        "The revocation is committed but could not yet be confirmed on every replica (Redis unreachable); " +
          "replicas that can't reach Redis already refuse it, the others will within the token cache TTL. Retry to confirm.",
      );
    }
  }

  private async writeMarkers(revoked: Revoked): Promise<void> {
    if (this.client.status !== "ready") throw new Error("Connection is closed");
    const pipeline = this.client.pipeline();
    for (const id of revoked.tokenIds) pipeline.set(this.tokenKey(id), "1", "PX", MARKER_TTL_MS);
    for (const id of revoked.serviceAccountIds) pipeline.set(this.accountKey(id), "1", "PX", MARKER_TTL_MS);
    for (const id of revoked.changedTokenIds ?? []) pipeline.set(this.changedKey(id), randomUUID(), "PX", MARKER_TTL_MS);
    const results = await pipeline.exec();
    const failed = results?.find(([err]) => err !== null);
    if (!results || failed) throw failed?.[0] ?? new Error("Redis pipeline returned nothing");
  }

  /** Rebuilds the markers from PostgreSQL and writes a new epoch. One at a time per replica, and across replicas by a lock. */
  rebuild(): Promise<void> {
    if (this.rebuilding) return this.rebuilding;
    this.rebuilding = (async () => {
      const lockKey = `${this.prefix}revocations:rebuild-lock`;
      const lockId = randomUUID();
      try {
        const locked = await this.client.set(lockKey, lockId, "PX", REBUILD_LOCK_MS, "NX");
        if (locked !== "OK") return; // another replica is rebuilding; we keep polling for its epoch
        try {
          const since = new Date(Date.now() - REBUILD_WINDOW_MS);
          const revoked = await this.opts.loadRevokedSince(since);
          for (let i = 0; i < Math.max(revoked.tokenIds.length, revoked.serviceAccountIds.length, 1); i += 1000) {
            await this.writeMarkers({ tokenIds: revoked.tokenIds.slice(i, i + 1000), serviceAccountIds: revoked.serviceAccountIds.slice(i, i + 1000) });
            if ((await this.client.eval(EXTEND_LOCK, 1, lockKey, lockId, REBUILD_LOCK_MS)) !== 1) throw new Error("Redis lost the rebuild lock (restarted?)");
          }
          // The epoch is written only if our lock survived: a Redis that restarted during the
          // rebuild lost the lock and the markers with it, so it must not be declared complete.
          const epoch = randomUUID();
          const written = await this.client.eval(COMMIT_EPOCH, 2, lockKey, this.epochKey, lockId, epoch);
          if (written !== 1) throw new Error("Redis lost the rebuild lock (restarted?) before the epoch was written");
          this.observeEpoch(epoch);
          this.opts.log.warn({ tokens: revoked.tokenIds.length, service_accounts: revoked.serviceAccountIds.length }, "revocation markers rebuilt from PostgreSQL");
        } catch (err) {
          // Let another attempt (ours or another replica's) start at once.
          await this.client.eval(RELEASE_LOCK, 1, lockKey, lockId).catch(() => undefined);
          throw err;
        }
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, "revocation marker rebuild failed; will retry");
      } finally {
        this.rebuilding = null;
      }
    })();
    return this.rebuilding;
  }

  trusted(): boolean {
    return this.lastCheckOk && this.client.status === "ready";
  }

  onInvalidate(listener: () => void): void {
    this.listeners.push(listener);
  }

  async close(): Promise<void> {
    if (this.poller) clearInterval(this.poller);
    this.client.disconnect();
  }
}

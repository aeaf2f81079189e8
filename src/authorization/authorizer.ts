/**
 * The Authorize use case. Hot path: a cached token record plus one pipelined Redis round
 * trip; PostgreSQL only for tokens not seen recently, or when the revocation markers can't
 * be trusted (Redis down or restarted empty), in which case it fails closed if PostgreSQL
 * can't answer either.
 */
import { createHash } from "node:crypto";
import {
  type AuthorizeRequest,
  type AuthorizeResponse,
  DecisionReason,
  type Principal,
} from "../generated/pokerworks/identity/v1/authorization_service";
import { UnavailableError, Violations } from "../shared/errors";
import { redactSecrets } from "../shared/logger";
import { isEnvironment, isHumanOnlyAction, isLaunchScope, LAUNCH_SCOPES } from "../shared/scopes";
import { RESOURCE_ID_PATTERN } from "../shared/validation";
import { isProductKey, isWellFormedToken } from "../tokens/token-format";
import { TtlCache } from "./cache";
import type { LastUsedRecorder } from "./last-used";
import type { RevocationStore } from "./revocation-store";
import { type Decision, decideForRecord, MALFORMED, PRODUCT_KEY, type TokenRecord, UNKNOWN } from "./rules";
import type { TokenLookup } from "./token-lookup";

export interface AuthorizerMetrics {
  decision(reason: DecisionReason): void;
  cache(hit: boolean): void;
  fallback(kind: "redis_untrusted" | "postgres_lookup"): void;
}

export interface AuthorizerOptions {
  lookup: TokenLookup;
  revocations: RevocationStore;
  lastUsed: Pick<LastUsedRecorder, "touch">;
  cacheMaxEntries: number;
  cacheTtlMs: number;
  negativeCacheMaxEntries: number;
  negativeCacheTtlMs?: number;
  /** Upper bound on one PostgreSQL lookup on the hot path. */
  lookupTimeoutMs: number;
  metrics?: AuthorizerMetrics;
  nowMs?: () => number;
}

const UNAVAILABLE_MESSAGE = "Can't decide: the token could not be read from PostgreSQL in time and the revocation cache can't vouch for it; retry with backoff";

export function validateAuthorizeRequest(req: AuthorizeRequest): void {
  const v = new Violations();
  if (req.token === "") v.add("token", "token is required");
  if (req.scope === "") v.add("scope", "scope is required");
  else if (!isLaunchScope(req.scope) && !isHumanOnlyAction(req.scope))
    v.add("scope", `'${req.scope.slice(0, 64)}' is not a known scope; scopes are ${LAUNCH_SCOPES.join(", ")}`);
  if (req.environment !== "" && !isEnvironment(req.environment)) v.add("environment", "environment must be 'test', 'live' or empty");
  if (req.projectId !== "" && !RESOURCE_ID_PATTERN.test(req.projectId)) v.add("project_id", "project_id must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$");
  if (req.organizationId !== "" && !RESOURCE_ID_PATTERN.test(req.organizationId))
    v.add("organization_id", "organization_id must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$");
  v.throwIfAny();
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error("PostgreSQL lookup timed out"), { code: "ETIMEDOUT" })), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function principalOf(r: TokenRecord): Principal {
  return {
    organizationId: r.organizationId,
    serviceAccountId: r.serviceAccountId,
    tokenId: r.tokenId,
    scopes: r.scopes as string[],
    projectIds: r.projectIds as string[],
    environments: r.environments as string[],
    expireTime: r.expireTimeMs === null ? undefined : new Date(r.expireTimeMs),
    supersededByTokenId: r.supersededByTokenId,
  };
}

export class Authorizer {
  readonly cache: TtlCache<TokenRecord>;
  readonly negative: TtlCache<true>;
  /**
   * Lookups in flight, by key, each with the sequence number it started at. Concurrent
   * misses share one lookup; but a lookup that started before a call began may predate a
   * revocation that returned before that call, so it can only vouch for the call when the
   * revocation markers are checked afterwards (see `authorize`).
   */
  private readonly inflight = new Map<string, { seq: number; promise: Promise<TokenRecord | null> }>();
  private seq = 0;
  private readonly nowMs: () => number;

  constructor(private readonly opts: AuthorizerOptions) {
    this.cache = new TtlCache(opts.cacheMaxEntries, opts.cacheTtlMs);
    this.negative = new TtlCache(opts.negativeCacheMaxEntries, opts.negativeCacheTtlMs ?? 30_000);
    this.nowMs = opts.nowMs ?? Date.now;
    opts.revocations.onInvalidate(() => this.cache.clear());
  }

  /** `caller` is the calling service's certificate name, when mutual TLS is on (for usage records). */
  async authorize(req: AuthorizeRequest, caller = ""): Promise<AuthorizeResponse> {
    validateAuthorizeRequest(req);
    if (isProductKey(req.token)) return this.respond(PRODUCT_KEY);
    if (!isWellFormedToken(req.token)) return this.respond(MALFORMED);
    const begin = ++this.seq;

    const hash = createHash("sha256").update(req.token, "utf8").digest();
    const key = hash.toString("base64");
    const now = this.nowMs();
    let record = this.cache.get(key, now);
    let fresh = false;
    this.opts.metrics?.cache(record !== undefined);
    if (record === undefined) {
      if (this.negative.get(key, now)) return this.respond(UNKNOWN);
      const loaded = await this.load(key, hash, 0);
      if (loaded.record === null) {
        this.negative.set(key, true, now);
        return this.respond(UNKNOWN);
      }
      record = loaded.record;
      // Read by a query that started after this call began: it reflects every revocation
      // that returned before this call.
      fresh = loaded.seq > begin;
    }

    if (!record.tokenRevoked && !record.serviceAccountRevoked) {
      const markers = await this.opts.revocations.check(record.tokenId, record.serviceAccountId);
      if (!markers.trusted || markers.epochChanged) {
        // The markers can't vouch for a cached record: decide from PostgreSQL, or not at all.
        this.opts.metrics?.fallback("redis_untrusted");
        if (!fresh) {
          const reloaded = await this.reload(key, hash, begin);
          if (reloaded === null) return this.respond(UNKNOWN);
          record = reloaded;
        }
      } else if (markers.tokenRevoked || markers.serviceAccountRevoked) {
        record = { ...record, tokenRevoked: record.tokenRevoked || markers.tokenRevoked, serviceAccountRevoked: record.serviceAccountRevoked || markers.serviceAccountRevoked };
        this.cache.set(key, record, now);
      } else if (markers.changed && record.changeSeen !== markers.changed) {
        // Rotated (superseded, expiry brought forward) since this record was read: re-read it
        // with a query that starts after the marker was seen, once per change and replica.
        const reloaded = await this.reload(key, hash, ++this.seq);
        if (reloaded === null) return this.respond(UNKNOWN);
        record = { ...reloaded, changeSeen: markers.changed };
        this.cache.set(key, record, now);
      }
    }

    const decision = decideForRecord(record, req, now);
    if (decision.reason !== DecisionReason.DECISION_REASON_SERVICE_ACCOUNT_REVOKED && decision.reason !== DecisionReason.DECISION_REASON_TOKEN_REVOKED && decision.reason !== DecisionReason.DECISION_REASON_TOKEN_EXPIRED)
      this.opts.lastUsed.touch(record.tokenId, now, caller, req.scope);
    return this.respond(decision, record);
  }

  /** Drops cached records (a revocation through this replica). */
  forget(): void {
    this.cache.clear();
  }

  private respond(decision: Decision, record?: TokenRecord): AuthorizeResponse {
    this.opts.metrics?.decision(decision.reason);
    return {
      allowed: decision.reason === DecisionReason.DECISION_REASON_ALLOWED,
      reason: decision.reason,
      // Messages name the request's own fields; never let a credential through (a caller may
      // pass the token in the wrong field, and project ids look just like tokens).
      message: redactSecrets(decision.message),
      principal: record ? principalOf(record) : undefined,
    };
  }

  /**
   * Cache miss: one lookup per key at a time, whatever the concurrency; a lookup in flight
   * is shared only if it started after `startedAfter` (a sequence number).
   */
  private async load(key: string, hash: Buffer, startedAfter: number): Promise<{ seq: number; record: TokenRecord | null }> {
    let entry = this.inflight.get(key);
    if (!entry || entry.seq <= startedAfter) {
      const seq = ++this.seq;
      this.opts.metrics?.fallback("postgres_lookup");
      // The query goes on when its callers stop waiting (lookupTimeoutMs): its answer still
      // fills the cache, and calls that come meanwhile share it rather than piling more
      // queries onto a slow database.
      const promise = this.opts.lookup(hash).then((record) => {
        if (record) this.cache.set(key, record, this.nowMs());
        return record;
      });
      const started = { seq, promise };
      promise.finally(() => this.inflight.get(key) === started && this.inflight.delete(key)).catch(() => undefined);
      this.inflight.set(key, started);
      entry = started;
    }
    return { seq: entry.seq, record: await this.wait(entry.promise) };
  }

  /** A lookup that started after sequence number `begin`: it can decide without the markers. */
  private async reload(key: string, hash: Buffer, begin: number): Promise<TokenRecord | null> {
    this.cache.delete(key);
    return (await this.load(key, hash, begin)).record;
  }

  private async wait(lookup: Promise<TokenRecord | null>): Promise<TokenRecord | null> {
    try {
      return await withTimeout(lookup, this.opts.lookupTimeoutMs);
    } catch {
      throw new UnavailableError(UNAVAILABLE_MESSAGE);
    }
  }

}

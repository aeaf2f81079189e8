/**
 * Redis faults, each on a private redis-server this file starts (the shared one is never
 * touched):
 * - Redis killed (SIGKILL) in the middle of Authorize load, revocations during the outage,
 *   then Redis back empty: every answer stays right (PostgreSQL fallback), no token revoked
 *   before or during the outage is ever allowed again, nor after Redis returns empty.
 * - A revocation whose Redis write fails: the Revoke RPC answers UNAVAILABLE (it does not
 *   report success), replicas that can't reach Redis refuse the token at once from
 *   PostgreSQL, and once a retry succeeds every replica refuses it.
 */
import { status } from "@grpc/grpc-js";
import { execFileSync } from "node:child_process";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { authorize, createServiceAccount, createToken, type Issued, reasonName, revokeServiceAccount, revokeToken, sleep, waitFor } from "../support/authz";
import { call, createTestDatabase, failure, sql, startTestServer, type TestDatabase, type TestServer, testRedisPrefix, userActor } from "../support/harness";
import { HealthClient } from "../support/health-client";
import { PrivateRedis } from "../support/private-servers";
import { AuthorizeLoad, countBy } from "../support/reliability-load";
import { CuttableProxy } from "../support/reliability-proxy";

const AUTHZ = "pokerworks.identity.v1.AuthorizationService";

let db: TestDatabase;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});
afterAll(async () => {
  await db?.drop();
});

function redisCli(port: number, ...args: string[]): string {
  return execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], { stdio: "pipe" }).toString().trim();
}

describe("Redis killed during Authorize load", () => {
  it("keeps every decision right through the outage and after Redis returns empty", async () => {
    const redis = await PrivateRedis.start();
    cleanup.push(() => redis.stop());
    const server = await startTestServer(db.url, { REDIS_URL: redis.url, HEALTH_CHECK_INTERVAL_MS: "100", LOG_LEVEL: "warn" });
    cleanup.push(() => server.stop());
    const c = server.clients;
    const org = "org_redis_kill";
    const sa = await createServiceAccount(c, org, "load");
    const saDoomed = await createServiceAccount(c, org, "doomed");
    const make = (n: number, saId: string) => Promise.all(Array.from({ length: n }, () => createToken(c, org, saId, { scopes: ["projects:read"] })));
    const revokedBefore = await make(8, sa);
    const revokedDuring = await make(8, sa);
    const underDoomedAccount = await make(5, saDoomed);
    const neverRevoked = await make(8, sa);
    // When each token's revocation returned (any answer: the commit in PostgreSQL comes first).
    const revokedAt = new Map<string, number>();
    for (const t of revokedBefore) {
      await revokeToken(c, t);
      revokedAt.set(t.secret, performance.now());
    }

    const all = [...revokedBefore, ...revokedDuring, ...underDoomedAccount, ...neverRevoked];
    const load = new AuthorizeLoad([{ name: "replica", address: server.container.address }], all.map((t) => t.secret), { workersPerTarget: 8 });
    const health = new HealthClient(server.container.address);
    cleanup.push(async () => health.close());
    load.start();
    await sleep(800);

    // The outage.
    await redis.kill();
    const outageStart = performance.now();
    await health.waitFor("NOT_SERVING", AUTHZ, 5_000);
    await sleep(300);
    const answers: Record<string, number> = {};
    for (const t of revokedDuring) {
      const r = await call(c.tokens.revokeToken.bind(c.tokens), { organizationId: org, tokenId: t.tokenId, actor: userActor() }).then(
        () => "OK",
        (e: { code: number }) => status[e.code]!,
      );
      revokedAt.set(t.secret, performance.now());
      answers[r] = (answers[r] ?? 0) + 1;
    }
    const saAnswer = await call(c.serviceAccounts.revokeServiceAccount.bind(c.serviceAccounts), { organizationId: org, serviceAccountId: saDoomed, actor: userActor() }).then(
      () => "OK",
      (e: { code: number }) => status[e.code]!,
    );
    for (const t of underDoomedAccount) revokedAt.set(t.secret, performance.now());
    // Redis is down: the revocations are committed but can't be confirmed on every replica, so no OK.
    expect(answers).toEqual({ UNAVAILABLE: revokedDuring.length });
    expect(saAnswer).toBe("UNAVAILABLE");
    await sleep(1_000);
    const outageEnd = performance.now();

    // Redis comes back with nothing in it.
    await redis.start();
    await health.waitFor("SERVING", AUTHZ, 10_000);
    const backAt = performance.now();
    await sleep(1_500);
    await load.stop();

    // The revocations made during the outage are in PostgreSQL.
    const rows = await sql<{ status: string }>(db.url, "select status from tokens where id = any($1)", [[...revokedDuring, ...underDoomedAccount].map((t) => t.tokenId)]);
    expect(rows.map((r) => r.status)).toEqual(Array(revokedDuring.length + underDoomedAccount.length).fill("revoked"));

    const obs = load.observations;
    const inOutage = obs.filter((o) => o.start >= outageStart && o.end <= outageEnd);
    const afterReturn = obs.filter((o) => o.start >= backAt);
    // Never an allow for a token whose revocation had returned when the call started.
    const wrongAllows = obs.filter((o) => o.allowed === true && revokedAt.has(o.token) && o.start > revokedAt.get(o.token)!);
    expect(wrongAllows, JSON.stringify(wrongAllows.slice(0, 5))).toEqual([]);
    // Never a refusal for a token that was never revoked: PostgreSQL answered for Redis.
    const active = new Set(neverRevoked.map((t) => t.secret));
    const wrongRefusals = obs.filter((o) => active.has(o.token) && o.allowed === false);
    expect(wrongRefusals, JSON.stringify(wrongRefusals.slice(0, 5))).toEqual([]);
    // Failed calls: only UNAVAILABLE (fail closed when a PostgreSQL lookup exceeds its timeout on
    // an overloaded machine), and rare.
    const failed = obs.filter((o) => o.code !== undefined);
    expect(Object.keys(countBy(failed, (o) => status[o.code!]!)).filter((k) => k !== "UNAVAILABLE")).toEqual([]);
    expect(failed.length, JSON.stringify(failed.slice(0, 3))).toBeLessThan(obs.length / 100);
    // There was real load in each phase.
    expect(inOutage.length).toBeGreaterThan(50);
    expect(afterReturn.length).toBeGreaterThan(50);
    // After Redis returned empty the markers were rebuilt from PostgreSQL: every revoked token refused.
    for (const t of [...revokedBefore, ...revokedDuring, ...underDoomedAccount]) expect((await authorize(c, { token: t.secret, scope: "projects:read" })).allowed).toBe(false);
    const markers = Number(redisCli(redis.port, "eval", "return #redis.call('keys', ARGV[1])", "0", "*rv:*"));
    expect(markers).toBeGreaterThanOrEqual(revokedBefore.length + revokedDuring.length + underDoomedAccount.length);
    console.log(
      `redis kill: ${obs.length} Authorize calls (${inOutage.length} during the outage, ${afterReturn.length} after Redis returned empty, ${failed.length} UNAVAILABLE), ` +
        `answers ${JSON.stringify(countBy(obs, (o) => o.reason ?? `error ${o.code}`))}`,
    );
  }, 90_000);
});

describe("a revocation whose Redis write fails", () => {
  it("is not reported as a success; replicas without Redis refuse the token at once; after a successful retry every replica does", async () => {
    const redis = await PrivateRedis.start();
    cleanup.push(() => redis.stop());
    const proxy = await CuttableProxy.start(redis.port);
    cleanup.push(() => proxy.close());
    const prefix = testRedisPrefix();
    // Records stay cached for a minute: only the Redis markers can tell a replica about a revocation.
    const env = { REDIS_KEY_PREFIX: prefix, TOKEN_CACHE_TTL_MS: "60000", HEALTH_CHECK_INTERVAL_MS: "100", LOG_LEVEL: "warn" };
    const a: TestServer = await startTestServer(db.url, { ...env, REDIS_URL: redis.url });
    cleanup.push(() => a.stop());
    const b: TestServer = await startTestServer(db.url, { ...env, REDIS_URL: redis.url });
    cleanup.push(() => b.stop());
    const cNoRedis: TestServer = await startTestServer(db.url, { ...env, REDIS_URL: proxy.url });
    cleanup.push(() => cNoRedis.stop());
    const replicas = { a, b, c: cNoRedis };
    const org = "org_redis_write";
    const sa1 = await createServiceAccount(a.clients, org, "one");
    const sa2 = await createServiceAccount(a.clients, org, "two");
    const t1: Issued = await createToken(a.clients, org, sa1, { scopes: ["projects:read"] });
    const t3: Issued = await createToken(a.clients, org, sa2, { scopes: ["projects:read"] });
    const decide = async (r: TestServer, t: Issued) => {
      const res = await authorize(r.clients, { token: t.secret, scope: "projects:read" });
      return res.allowed ? "allowed" : reasonName(res.reason);
    };
    for (const r of Object.values(replicas)) for (const t of [t1, t3]) expect(await decide(r, t)).toBe("allowed"); // every replica has both cached

    // Redis refuses writes (reads still work), and replica C loses Redis altogether.
    redisCli(redis.port, "config", "set", "maxmemory", "1");
    expect(redisCli(redis.port, "set", "probe", "1")).toMatch(/OOM/);
    proxy.cut();
    await waitFor("replica C to notice Redis is gone", async () => !cNoRedis.container.revocations.trusted());

    // RevokeToken: committed in PostgreSQL, but the markers can't be written -> UNAVAILABLE, not OK.
    const e = await failure(call(a.clients.tokens.revokeToken.bind(a.clients.tokens), { organizationId: org, tokenId: t1.tokenId, actor: userActor() }));
    expect(status[e.code]).toBe("UNAVAILABLE");
    expect(e.reason).toBe("ERROR_REASON_DEPENDENCY_UNAVAILABLE");
    expect(e.message).toMatch(/committed but could not yet be confirmed on every replica/);
    expect((await sql<{ status: string }>(db.url, "select status from tokens where id = $1", [t1.tokenId]))[0]!.status).toBe("revoked");
    // Replica C can't reach Redis: it decides from PostgreSQL and refuses at once.
    expect(await decide(cNoRedis, t1)).toBe("DECISION_REASON_TOKEN_REVOKED");
    // Replica B reaches Redis, finds no marker and still trusts its cached record: this is why
    // the RPC could not report success.
    expect(await decide(b, t1)).toBe("allowed");

    // Same for a service account.
    const e2 = await failure(call(a.clients.serviceAccounts.revokeServiceAccount.bind(a.clients.serviceAccounts), { organizationId: org, serviceAccountId: sa2, actor: userActor() }));
    expect(status[e2.code]).toBe("UNAVAILABLE");
    expect(await decide(cNoRedis, t3)).toBe("DECISION_REASON_SERVICE_ACCOUNT_REVOKED");

    // Redis accepts writes again: the retry reports success, and from then on every replica refuses.
    redisCli(redis.port, "config", "set", "maxmemory", "0");
    await revokeToken(a.clients, t1);
    await revokeServiceAccount(a.clients, org, sa2);
    for (const [name, r] of Object.entries(replicas)) {
      expect(await decide(r, t1), `replica ${name}, token`).toBe("DECISION_REASON_TOKEN_REVOKED");
      expect(await decide(r, t3), `replica ${name}, service account`).toBe("DECISION_REASON_SERVICE_ACCOUNT_REVOKED");
    }
    // Replica C gets Redis back and still refuses both (now from the markers).
    proxy.restore();
    await waitFor("replica C to trust Redis again", async () => cNoRedis.container.revocations.trusted(), 10_000);
    expect(await decide(cNoRedis, t1)).toBe("DECISION_REASON_TOKEN_REVOKED");
    expect(await decide(cNoRedis, t3)).toBe("DECISION_REASON_SERVICE_ACCOUNT_REVOKED");
    // Only one audit event per revocation, although each was asked twice.
    const events = await sql<{ action: string; n: number }>(db.url, "select action, count(*)::int as n from audit_events where target_id = any($1) and action like '%revoked' group by action order by action", [
      [t1.tokenId, sa2],
    ]);
    expect(events).toEqual([
      { action: "service_account.revoked", n: 1 },
      { action: "token.revoked", n: 1 },
    ]);
  }, 90_000);
});

/**
 * Issue 3: revocation markers when Redis misbehaves, on a PRIVATE redis-server this file
 * starts, crashes and restarts (the shared Redis is never touched), with several servers
 * (replicas) sharing one database and one Redis key prefix:
 * (a) Redis restarted empty does not bring a revoked token back, also from a warm cache;
 *     until the markers are rebuilt, decisions come from PostgreSQL;
 * (b) Redis partitioned or stopped: Authorize decides from PostgreSQL, quickly;
 * (c) Redis stopped and PostgreSQL unreachable: UNAVAILABLE, never allowed;
 * (d) Revoke while Redis is down is UNAVAILABLE, and a retry once it is back is OK.
 * PostgreSQL and Redis faults for one server are injected with a TCP proxy in front of the
 * real server (test/support/tcp-proxy.ts).
 */
import { status as Code } from "@grpc/grpc-js";
import Redis from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  authorize,
  createServiceAccount,
  createToken,
  type Issued,
  randomBase62,
  reasonName,
  revokeServiceAccount,
  revokeToken,
  sleep,
  waitFor,
  wellFormedToken,
} from "../support/authz";
import { call, createTestDatabase, failure, type TestDatabase, type TestServer, startTestServer, testRedisPrefix, userActor } from "../support/harness";
import { PrivateRedis } from "../support/private-servers";
import { TcpProxy } from "../support/tcp-proxy";

const ORG = "org_faults";
const SCOPE = "projects:read";
const REVOKED = "DECISION_REASON_TOKEN_REVOKED";
const SA_REVOKED = "DECISION_REASON_SERVICE_ACCOUNT_REVOKED";
const ALLOWED = "DECISION_REASON_ALLOWED";

let db: TestDatabase;
let redis: PrivateRedis;
let admin: Redis;
let prefix: string;
/** Replicas on PostgreSQL and the private Redis directly. */
let A: TestServer;
let B: TestServer;
/** A replica whose PostgreSQL goes through `pgProxy`. */
let D: TestServer;
let pgProxy: TcpProxy;
/** A replica whose Redis goes through `redisProxy`. */
let E: TestServer;
let redisProxy: TcpProxy;

const key = {
  epoch: () => `{${prefix}}:revocations:epoch`,
  lock: () => `{${prefix}}:revocations:rebuild-lock`,
  token: (id: string) => `{${prefix}}:rv:tok:${id}`,
  account: (id: string) => `{${prefix}}:rv:sa:${id}`,
};

const decide = async (s: TestServer, tok: Issued | string) => reasonName((await authorize(s.clients, { token: typeof tok === "string" ? tok : tok.secret, scope: SCOPE })).reason);
const newAccount = (name: string) => createServiceAccount(B.clients, ORG, `${name}-${randomBase62(6)}`);
const newToken = (sa: string) => createToken(B.clients, ORG, sa, { scopes: [SCOPE] });
const allTrusted = () => [A, B, D, E].every((s) => s.container.revocations.trusted());

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await fn();
  return { value, ms: Date.now() - started };
}

beforeAll(async () => {
  db = await createTestDatabase();
  redis = await PrivateRedis.start();
  admin = new Redis(redis.url, { maxRetriesPerRequest: 3 });
  admin.on("error", () => undefined);
  prefix = testRedisPrefix();
  pgProxy = new TcpProxy("127.0.0.1", 5432, { countPostgres: true });
  redisProxy = new TcpProxy("127.0.0.1", redis.port);
  const pgProxyUrl = new URL(db.url);
  pgProxyUrl.port = String(await pgProxy.start());
  await redisProxy.start();
  const env = { REDIS_URL: redis.url, REDIS_KEY_PREFIX: prefix, TOKEN_CACHE_TTL_MS: "300000" };
  A = await startTestServer(db.url, env);
  B = await startTestServer(db.url, env);
  D = await startTestServer(pgProxyUrl.toString(), env);
  E = await startTestServer(db.url, { ...env, REDIS_URL: `redis://127.0.0.1:${redisProxy.port}` });
  await waitFor("every replica trusts the markers", allTrusted, 15_000);
});

afterAll(async () => {
  if (process.env.SHOW_LOGS) for (const s of [A, B, D, E]) console.log(s?.logs.text);
  pgProxy?.forward();
  redisProxy?.forward();
  for (const s of [A, B, D, E]) await s?.stop();
  await pgProxy?.close();
  await redisProxy?.close();
  admin?.disconnect();
  await redis?.stop();
  await db?.drop();
});

describe("(a) Redis restarted empty", () => {
  it("a crash and restart does not bring back a revoked token whose marker only lived in the old Redis, even from a warm cache", async () => {
    const sa1 = await newAccount("restart");
    const sa2 = await newAccount("restart-sa");
    const revoked = await newToken(sa1);
    const active = await newToken(sa1);
    const ofRevokedSa = await newToken(sa2);
    for (const s of [A, B, D, E]) for (const tok of [revoked, active, ofRevokedSa]) expect(await decide(s, tok)).toBe(ALLOWED); // every cache warm

    await revokeToken(B.clients, revoked);
    await revokeServiceAccount(B.clients, ORG, sa2);
    // The markers are in this Redis only; no replica but B has looked at them since.
    expect(await admin.exists(key.token(revoked.tokenId), key.account(sa2))).toBe(2);

    await redis.restartEmpty();
    expect(await admin.exists(key.token(revoked.tokenId), key.account(sa2), key.epoch())).toBe(0);

    // From the first moment on, on every replica: never allowed.
    const until = Date.now() + 1500;
    let rounds = 0;
    while (Date.now() < until) {
      for (const s of [A, B, D, E]) {
        expect(await decide(s, revoked)).toBe(REVOKED);
        expect(await decide(s, ofRevokedSa)).toBe(SA_REVOKED);
        expect(await decide(s, active)).toBe(ALLOWED);
      }
      rounds++;
    }
    expect(rounds).toBeGreaterThan(3);

    // One replica rebuilt the markers from PostgreSQL and wrote a new epoch.
    await waitFor("markers rebuilt", async () => (await admin.exists(key.epoch(), key.token(revoked.tokenId), key.account(sa2))) === 3, 10_000, 50);
    expect([A, B, D, E].some((s) => s.logs.text.includes("revocation markers rebuilt from PostgreSQL"))).toBe(true);
    await waitFor("every replica trusts the markers again", allTrusted, 10_000);
    for (const s of [A, B, D, E]) {
      expect(await decide(s, revoked)).toBe(REVOKED);
      expect(await decide(s, ofRevokedSa)).toBe(SA_REVOKED);
      expect(await decide(s, active)).toBe(ALLOWED);
    }
  });

  it("until the rebuild is done, replicas decide from PostgreSQL (rebuild held back on purpose)", async () => {
    await waitFor("every replica trusts the markers", allTrusted, 35_000);
    const sa = await newAccount("window");
    const revoked = await newToken(sa);
    const active = await newToken(sa);
    for (const s of [A, B]) for (const tok of [revoked, active]) expect(await decide(s, tok)).toBe(ALLOWED);
    await revokeToken(B.clients, revoked);

    // Redis loses everything, and the rebuild can't start: another "replica" holds its lock.
    await admin.multi().flushall().set(key.lock(), "held-by-the-test", "PX", 20_000).exec();
    try {
      const until = Date.now() + 1200;
      while (Date.now() < until) {
        for (const s of [A, B]) {
          expect(await decide(s, revoked)).toBe(REVOKED);
          expect(await decide(s, active)).toBe(ALLOWED);
        }
      }
      // The whole time, the markers were gone and no epoch was written.
      expect(await admin.exists(key.epoch(), key.token(revoked.tokenId))).toBe(0);
      expect(A.container.revocations.trusted()).toBe(false);
    } finally {
      await admin.del(key.lock());
    }
    await waitFor("markers rebuilt", async () => (await admin.exists(key.epoch(), key.token(revoked.tokenId))) === 2, 10_000, 50);
    await waitFor("every replica trusts the markers again", allTrusted, 10_000);
    expect(await decide(A, revoked)).toBe(REVOKED);
  });

  it("a lookup already in flight when the revocation committed can't vouch for a later Authorize while the markers are untrusted", async () => {
    await waitFor("every replica trusts the markers", allTrusted, 35_000);
    // Open a few PostgreSQL connections on D now, so nothing below waits for a new one.
    await Promise.all(Array.from({ length: 4 }, () => decide(D, wellFormedToken())));

    // Redis loses everything and the rebuild is held back: D's markers are untrusted.
    await admin.multi().flushall().set(key.lock(), "held-by-the-test", "PX", 20_000).exec();
    pgProxy.responseDelayMs = 400; // D's queries run at once; their answers come 400 ms later
    let raced = 0;
    try {
      // On a slow machine the revocation may not fit in the window; try again then.
      for (let attempt = 0; attempt < 3 && raced === 0; attempt++) {
        const sa = await newAccount("inflight");
        const tok = await newToken(sa);
        const before = pgProxy.statements.length;
        let firstDone = false;
        const first = authorize(D.clients, { token: tok.secret, scope: SCOPE }).finally(() => (firstDone = true)); // D reads the token: active
        await waitFor("D's lookup reached PostgreSQL", () => pgProxy.statements.slice(before).some((s) => s.includes("secret_hash")), 2000, 2);
        await sleep(30);
        await revokeToken(B.clients, tok); // committed and returned while D's answer is still on its way
        if (!firstDone) raced++;
        const afterRevoke = await authorize(D.clients, { token: tok.secret, scope: SCOPE });
        expect(reasonName(afterRevoke.reason)).toBe(REVOKED);
        await first; // sent before the revocation: either answer is correct
      }
    } finally {
      pgProxy.responseDelayMs = 0;
      await admin.del(key.lock());
    }
    expect(raced, "the revocation returned while the earlier lookup was still in flight").toBeGreaterThan(0);
    await waitFor("every replica trusts the markers again", allTrusted, 10_000);
  });
});

describe("(b) Redis partitioned or stopped: decide from PostgreSQL", () => {
  it("partitioned (packets stall): Authorize still decides correctly and quickly; Revoke through that replica is UNAVAILABLE until it heals", async () => {
    await waitFor("every replica trusts the markers", allTrusted, 35_000);
    const sa = await newAccount("partition");
    const toRevoke = await newToken(sa);
    const active = await newToken(sa);
    const cold = await newToken(sa);
    for (const tok of [toRevoke, active]) expect(await decide(E, tok)).toBe(ALLOWED);

    redisProxy.pause();
    try {
      await revokeToken(B.clients, toRevoke); // B reaches Redis; E does not
      for (const [tok, want] of [
        [toRevoke, REVOKED],
        [active, ALLOWED],
        [cold, ALLOWED],
      ] as const) {
        const { value, ms } = await timed(() => decide(E, tok));
        expect(value).toBe(want);
        expect(ms).toBeLessThan(1500);
      }
      const err = await failure(call(E.clients.tokens.revokeToken.bind(E.clients.tokens), { organizationId: ORG, tokenId: active.tokenId, actor: userActor() }));
      expect(err.code).toBe(Code.UNAVAILABLE);
      expect(await decide(E, active)).toBe(REVOKED); // committed: refused from PostgreSQL already
      expect(await decide(A, active)).not.toBe(ALLOWED);
    } finally {
      redisProxy.forward();
    }
    await waitFor("E trusts the markers again", () => E.container.revocations.trusted(), 10_000);
    await revokeToken(E.clients, active); // the retry confirms
    expect(await admin.exists(key.token(active.tokenId))).toBe(1);
    // After the partition healed, answers are still matched to the right questions.
    for (let i = 0; i < 20; i++) {
      expect(await decide(E, cold)).toBe(ALLOWED);
      expect(await decide(E, toRevoke)).toBe(REVOKED);
      expect(await decide(E, active)).toBe(REVOKED);
    }
  });

  it("stopped: revoked tokens stay refused (also from a warm cache), active ones are allowed, from PostgreSQL", async () => {
    const sa1 = await newAccount("stopped");
    const sa2 = await newAccount("stopped-sa");
    const revoked = await newToken(sa1);
    const active = await newToken(sa1);
    const cold = await newToken(sa1);
    const ofRevokedSa = await newToken(sa2);
    for (const tok of [revoked, active, ofRevokedSa]) expect(await decide(A, tok)).toBe(ALLOWED);
    await revokeToken(B.clients, revoked);
    await revokeServiceAccount(B.clients, ORG, sa2);

    await redis.kill();
    for (const s of [A, B]) {
      for (const [tok, want] of [
        [revoked, REVOKED],
        [ofRevokedSa, SA_REVOKED],
        [active, ALLOWED],
        [cold, ALLOWED],
      ] as const) {
        const { value, ms } = await timed(() => decide(s, tok));
        expect(value).toBe(want);
        expect(ms).toBeLessThan(1500);
      }
    }
    expect(A.container.revocations.trusted()).toBe(false);
  });
});

describe("(c) Redis stopped and PostgreSQL unreachable: fail closed", () => {
  it("UNAVAILABLE for every identified token, warm or cold; never allowed", async () => {
    const sa = await newAccount("both-down");
    const warm = await newToken(sa);
    const cold = await newToken(sa);
    expect(await decide(D, warm)).toBe(ALLOWED); // from PostgreSQL; now in D's cache

    for (const mode of ["refuse", "pause"] as const) {
      pgProxy[mode]();
      try {
        for (const tok of [warm, cold]) {
          const started = Date.now();
          const err = await failure(authorize(D.clients, { token: tok.secret, scope: SCOPE }));
          expect(err.code, `${mode}`).toBe(Code.UNAVAILABLE);
          expect(Date.now() - started, `${mode}: bounded by the lookup timeout`).toBeLessThan(2500);
          expect(err.message).not.toContain(tok.secret);
        }
        // What needs no storage is still answered.
        expect(await decide(D, "pw_live_" + randomBase62(32))).toBe("DECISION_REASON_PRODUCT_KEY_NOT_ACCEPTED");
        expect(await decide(D, warm.secret.slice(0, -1))).toBe("DECISION_REASON_TOKEN_MALFORMED");
      } finally {
        pgProxy.forward();
      }
    }
    await waitFor("D decides again", async () => (await decide(D, warm).catch(() => "")) === ALLOWED, 10_000, 100);
  });
});

describe("(d) Revoke while Redis is down", () => {
  it("RevokeToken and RevokeServiceAccount return UNAVAILABLE, the revocation already holds, and a retry after Redis is back returns OK", async () => {
    const sa1 = await newAccount("revoke-down");
    const sa2 = await newAccount("revoke-down-sa");
    const tok = await newToken(sa1);
    const ofSa = await newToken(sa2);
    for (const s of [A, B]) for (const t of [tok, ofSa]) expect(await decide(s, t)).toBe(ALLOWED);

    const revokeTok = () => call(B.clients.tokens.revokeToken.bind(B.clients.tokens), { organizationId: ORG, tokenId: tok.tokenId, actor: userActor() });
    const revokeSa = () => call(B.clients.serviceAccounts.revokeServiceAccount.bind(B.clients.serviceAccounts), { organizationId: ORG, serviceAccountId: sa2, actor: userActor() });
    const e1 = await failure(revokeTok());
    expect(e1.code).toBe(Code.UNAVAILABLE);
    expect(e1.reason).toBe("ERROR_REASON_DEPENDENCY_UNAVAILABLE");
    const e2 = await failure(revokeSa());
    expect(e2.code).toBe(Code.UNAVAILABLE);
    // Committed in PostgreSQL: no replica allows them, Redis or not.
    for (const s of [A, B]) {
      expect(await decide(s, tok)).toBe(REVOKED);
      expect(await decide(s, ofSa)).toBe(SA_REVOKED);
    }

    await redis.start();
    await waitFor("B reaches Redis again", () => B.container.revocations.trusted(), 15_000);
    const r1 = await revokeTok();
    expect(r1.token?.id).toBe(tok.tokenId);
    const r2 = await revokeSa();
    expect(r2.serviceAccount?.id).toBe(sa2);
    expect(await admin.exists(key.token(tok.tokenId), key.account(sa2))).toBe(2);
    await waitFor("every replica trusts the markers again", allTrusted, 15_000);
    for (const s of [A, B, D, E]) {
      expect(await decide(s, tok)).toBe(REVOKED);
      expect(await decide(s, ofSa)).toBe(SA_REVOKED);
    }
  });
});

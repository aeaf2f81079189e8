/**
 * Replicas dying under load. Three replicas run as separate OS processes (`node
 * dist/src/main.js`) on one PostgreSQL database and one Redis key prefix, each under
 * Authorize load while tokens are revoked through them. Replica A is killed with SIGKILL,
 * replica B stopped with SIGTERM while calls are in flight on it (held on a table lock, so
 * they are provably in flight when the signal lands). Clients on the survivor see no wrong
 * answer and no error; B finishes every call it had started and exits 0; no answer anywhere
 * allows a token after its revocation returned OK.
 */
import { status } from "@grpc/grpc-js";
import { Client as PgClient } from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authorize, createServiceAccount, createToken, type Issued, sleep, waitFor } from "../support/authz";
import { call, connect, createTestDatabase, REDIS_URL, sql, type TestDatabase, testRedisPrefix, userActor, type Clients } from "../support/harness";
import { startServiceProcess, type ServiceProcess } from "../support/process";
import { AuthorizeLoad, countBy } from "../support/reliability-load";

let db: TestDatabase;
const replicas: Record<string, ServiceProcess> = {};
const clients: Record<string, Clients> = {};
let locker: PgClient | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  const env = {
    DATABASE_URL: db.url,
    REDIS_URL,
    REDIS_KEY_PREFIX: testRedisPrefix(),
    LISTEN_ADDRESS: "127.0.0.1:0",
    SHUTDOWN_GRACE_MS: "15000",
    LOG_LEVEL: "info",
  };
  // One first (it applies the migrations), then the other two.
  replicas.c = await startServiceProcess(env);
  [replicas.a, replicas.b] = await Promise.all([startServiceProcess(env), startServiceProcess(env)]);
  for (const [name, p] of Object.entries(replicas)) clients[name] = connect(p.address);
}, 90_000);

afterAll(async () => {
  await locker?.end().catch(() => undefined);
  for (const c of Object.values(clients)) c.close();
  for (const p of Object.values(replicas)) if (p.proc.exitCode === null && p.proc.signalCode === null) await p.kill("SIGKILL");
  await db?.drop();
});

describe("replicas killed and stopped mid-load", () => {
  it("survivors never answer wrong, the drained replica finishes its in-flight calls, no revoked token is allowed anywhere", async () => {
    const org = "org_replicas";
    const c = clients.c!;
    const sa = await createServiceAccount(c, org, "load");
    const tokens: Issued[] = await Promise.all(Array.from({ length: 30 }, () => createToken(c, org, sa, { scopes: ["projects:read"] })));
    // Tokens B has never seen, so Authorize on B must read PostgreSQL for them (and wait on the lock).
    const unseen: Issued[] = await Promise.all(Array.from({ length: 5 }, () => createToken(c, org, sa, { scopes: ["projects:read"] })));
    const revokedAt = new Map<string, number>();
    const revoke = async (via: Clients, t: Issued) => {
      await call(via.tokens.revokeToken.bind(via.tokens), { organizationId: org, tokenId: t.tokenId, actor: userActor() });
      revokedAt.set(t.secret, performance.now());
    };

    const load = new AuthorizeLoad(
      Object.entries(replicas).map(([name, p]) => ({ name, address: p.address })),
      tokens.map((t) => t.secret),
      { workersPerTarget: 4, pauseMs: 2 },
    );
    load.start();
    await sleep(500);
    for (const t of tokens.slice(0, 4)) await revoke(clients.a!, t);
    for (const t of tokens.slice(4, 8)) await revoke(c, t);
    await sleep(300);

    // SIGKILL replica A in the middle of its load.
    const killedAt = performance.now();
    replicas.a!.proc.kill("SIGKILL");
    expect(await replicas.a!.exited).toBeNull(); // killed by the signal, no exit code
    await sleep(300);
    load.stopTarget("a");
    for (const t of tokens.slice(8, 12)) await revoke(c, t);
    for (const t of tokens.slice(12, 14)) await revoke(clients.b!, t);

    // Hold every query on `tokens` so calls to B stay in flight, then SIGTERM B.
    locker = new PgClient({ connectionString: db.url });
    await locker.connect();
    await locker.query("begin");
    await locker.query("lock table tokens in access exclusive mode");
    const b = clients.b!;
    const inFlight = [
      ...unseen.map((t) => ({ what: `Authorize ${t.tokenId}`, p: authorize(b, { token: t.secret, scope: "projects:read" }).then((r) => (r.allowed ? "allowed" : `denied ${r.reason}`)) })),
      ...[1, 2].map((i) => ({
        what: `CreateToken ${i}`,
        p: call(b.tokens.createToken.bind(b.tokens), { organizationId: org, serviceAccountId: sa, label: `in-flight-${i}`, scopes: ["org:read"], projectIds: [], environments: [], actor: userActor() }).then(
          (r) => `created ${r.token!.label}`,
        ),
      })),
      {
        what: "RevokeToken",
        p: call(b.tokens.revokeToken.bind(b.tokens), { organizationId: org, tokenId: tokens[14]!.tokenId, actor: userActor() }).then(() => {
          revokedAt.set(tokens[14]!.secret, performance.now());
          return "revoked";
        }),
      },
    ];
    const settled = inFlight.map((x) => x.p.then((v) => ({ what: x.what, ok: true, v }), (e: { code: number; details: string }) => ({ what: x.what, ok: false, v: `${status[e.code]} ${e.details}` })));
    // Wait until B's queries are waiting on the lock: then they are in flight on the server.
    await waitFor(
      "B's calls to wait on the lock",
      async () =>
        (
          await sql<{ n: number }>(
            db.url,
            "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query not like 'update tokens t set last_used_time%'",
          )
        )[0]!.n >= inFlight.length,
      5_000,
    ).catch(async (err: Error) => {
      const rows = await sql(db.url, "select wait_event_type, state, left(query, 80) as q from pg_stat_activity where datname = current_database()");
      throw new Error(`${err.message}: ${JSON.stringify(rows)}`);
    });
    const termAt = performance.now();
    replicas.b!.proc.kill("SIGTERM");
    await sleep(250);
    expect(replicas.b!.proc.exitCode).toBeNull(); // still draining
    await locker.query("commit");
    await locker.end();
    locker = undefined;
    const results = await Promise.all(settled);
    expect(results.filter((r) => !r.ok), JSON.stringify(results)).toEqual([]);
    expect(results.map((r) => r.v)).toEqual([...unseen.map(() => "allowed"), "created in-flight-1", "created in-flight-2", "revoked"]);
    expect(await replicas.b!.exited).toBe(0);
    load.stopTarget("b");

    // The survivor keeps serving; a few more revocations through it.
    for (const t of tokens.slice(15, 18)) await revoke(c, t);
    await sleep(500);
    await load.stop();

    const obs = load.observations;
    const active = new Set(tokens.filter((t) => !revokedAt.has(t.secret)).map((t) => t.secret));
    // Nowhere an allow for a token whose revocation had returned OK when the call started.
    const wrongAllows = obs.filter((o) => o.allowed === true && revokedAt.has(o.token) && o.start > revokedAt.get(o.token)!);
    expect(wrongAllows, JSON.stringify(wrongAllows.slice(0, 5))).toEqual([]);
    // Nowhere a refusal of a token never revoked.
    const wrongRefusals = obs.filter((o) => o.allowed === false && active.has(o.token));
    expect(wrongRefusals, JSON.stringify(wrongRefusals.slice(0, 5))).toEqual([]);
    // The survivor: no error beyond a rare fail-closed UNAVAILABLE (a timeout on an overloaded machine).
    const onC = obs.filter((o) => o.replica === "c");
    const cErrors = onC.filter((o) => o.code !== undefined);
    expect(Object.keys(countBy(cErrors, (o) => status[o.code!]!)).filter((k) => k !== "UNAVAILABLE")).toEqual([]);
    expect(cErrors.length, JSON.stringify(cErrors.slice(0, 3))).toBeLessThan(onC.length / 100);
    // A: errors only once it was killed, and only UNAVAILABLE.
    const aErrors = obs.filter((o) => o.replica === "a" && o.code !== undefined);
    expect(aErrors.filter((o) => o.end < killedAt)).toEqual([]);
    expect(Object.keys(countBy(aErrors, (o) => status[o.code!]!))).toEqual(aErrors.length ? ["UNAVAILABLE"] : []);
    // B: the calls it refused were new calls after SIGTERM (UNAVAILABLE, retry elsewhere), never a failure before it.
    const bErrors = obs.filter((o) => o.replica === "b" && o.code !== undefined);
    expect(bErrors.filter((o) => o.end < termAt)).toEqual([]);
    expect(Object.keys(countBy(bErrors, (o) => status[o.code!]!))).toEqual(bErrors.length ? ["UNAVAILABLE"] : []);
    expect(onC.length).toBeGreaterThan(200);

    // Every revocation is in PostgreSQL with exactly one audit event; the in-flight creations committed.
    const revokedIds = tokens.filter((t) => revokedAt.has(t.secret)).map((t) => t.tokenId);
    const rows = await sql<{ n: number }>(db.url, "select count(*)::int as n from tokens where id = any($1) and status = 'revoked'", [revokedIds]);
    expect(rows[0]!.n).toBe(revokedIds.length);
    const events = await sql<{ n: number }>(db.url, "select count(*)::int as n from audit_events where action = 'token.revoked' and target_id = any($1)", [revokedIds]);
    expect(events[0]!.n).toBe(revokedIds.length);
    expect((await sql(db.url, "select id from tokens where label like 'in-flight-%'")).length).toBe(2);
    console.log(
      `replicas: ${obs.length} Authorize calls (${JSON.stringify(countBy(obs, (o) => o.replica))}), ${revokedIds.length} revocations, ` +
        `errors ${JSON.stringify(countBy(obs.filter((o) => o.code !== undefined), (o) => `${o.replica}:${status[o.code!]}`))}; ` +
        `B finished ${results.length} in-flight calls after SIGTERM`,
    );
    // The survivor still answers.
    expect((await authorize(c, { token: [...active][0]!, scope: "projects:read" })).allowed).toBe(true);
  }, 120_000);
});

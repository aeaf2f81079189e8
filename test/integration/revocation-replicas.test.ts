/**
 * Issue 3's invariant, with three replicas as separate OS processes (`node dist/src/main.js`,
 * built by the suite's global setup) on one PostgreSQL database and one Redis key prefix:
 *
 *   after RevokeToken or RevokeServiceAccount returns OK, no Authorize on any replica
 *   returns allowed for that token.
 *
 * Each round warms every replica's cache with the token, keeps Authorize calls running on
 * all three while the revocation goes through one of them, then asks the others at once.
 * Every call sent after the Revoke RPC returned must be refused.
 */
import { performance } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authorize, createServiceAccount, createToken, type Issued, reasonName, revokeServiceAccount, revokeToken, sleep } from "../support/authz";
import { type Clients, connect, createTestDatabase, REDIS_URL, type TestDatabase, testRedisPrefix } from "../support/harness";
import { type ServiceProcess, startServiceProcess } from "../support/process";

const ROUNDS = 30;
const ORG = "org_replicas";
const SCOPE = "usage:read";
const ALLOWED = "DECISION_REASON_ALLOWED";

interface Replica {
  name: string;
  proc: ServiceProcess;
  clients: Clients;
}

let db: TestDatabase;
const replicas: Replica[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  const prefix = testRedisPrefix(); // one prefix for all three: they share the markers
  const env = {
    DATABASE_URL: db.url,
    REDIS_URL,
    REDIS_KEY_PREFIX: prefix,
    LISTEN_ADDRESS: "127.0.0.1:0",
    LOG_LEVEL: "info",
    // The longest cache the configuration allows: the worst case for the invariant.
    TOKEN_CACHE_TTL_MS: "300000",
    SHUTDOWN_GRACE_MS: "2000",
  };
  const procs = await Promise.all(["r1", "r2", "r3"].map(() => startServiceProcess(env, 60_000)));
  procs.forEach((proc, i) => replicas.push({ name: `r${i + 1}`, proc, clients: connect(proc.address) }));
  expect(new Set(procs.map((p) => p.proc.pid)).size).toBe(3);
}, 120_000);

afterAll(async () => {
  for (const r of replicas) {
    r.clients.close();
    await r.proc.kill("SIGTERM");
  }
  await db?.drop();
});

interface Sample {
  replica: string;
  sentAt: number;
  reason: string;
}

/** Keeps Authorize calls going on every replica (two at a time each) until stopped. */
function hammer(tokens: Issued[]) {
  const samples: Sample[] = [];
  let running = true;
  const loops = replicas.flatMap((r) =>
    [0, 1].map(async (lane) => {
      let i = lane;
      while (running) {
        const tok = tokens[i++ % tokens.length]!;
        const sentAt = performance.now();
        const d = await authorize(r.clients, { token: tok.secret, scope: SCOPE });
        samples.push({ replica: r.name, sentAt, reason: reasonName(d.reason) });
      }
    }),
  );
  return {
    samples,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

const totals = { allowedBeforeRevoke: 0, checkedAfterRevoke: 0 };

async function round(kind: "token" | "service account", n: number): Promise<void> {
  const via = replicas[n % 3]!;
  const others = replicas.filter((r) => r !== via);
  const creator = replicas[(n + 1) % 3]!;
  const sa = await createServiceAccount(creator.clients, ORG, `${kind === "token" ? "tok" : "sa"}-${n}`);
  const tokens = await Promise.all((kind === "token" ? [0] : [0, 1]).map(() => createToken(creator.clients, ORG, sa, { scopes: [SCOPE] })));

  // Warm every replica's cache.
  for (const r of replicas) for (const tok of tokens) expect(reasonName((await authorize(r.clients, { token: tok.secret, scope: SCOPE })).reason), r.name).toBe(ALLOWED);

  const load = hammer(tokens);
  await sleep(2 + (n % 5));
  if (kind === "token") await revokeToken(via.clients, tokens[0]!);
  else await revokeServiceAccount(via.clients, ORG, sa);
  const returnedAt = performance.now();

  // At once, on the other replicas (and the one that revoked).
  const want = kind === "token" ? "DECISION_REASON_TOKEN_REVOKED" : "DECISION_REASON_SERVICE_ACCOUNT_REVOKED";
  const immediate = await Promise.all(
    [...others, via].flatMap((r) => tokens.map(async (tok) => ({ replica: r.name, reason: reasonName((await authorize(r.clients, { token: tok.secret, scope: SCOPE })).reason) }))),
  );
  await sleep(5);
  await load.stop();

  for (const d of immediate) expect(d.reason, `round ${n}: ${d.replica} right after the revoke returned`).toBe(want);
  const after = load.samples.filter((s) => s.sentAt > returnedAt);
  const violations = after.filter((s) => s.reason === ALLOWED);
  expect(violations, `round ${n}: allowed after the ${kind} revocation returned`).toEqual([]);
  for (const s of after) expect(s.reason).toBe(want);
  totals.allowedBeforeRevoke += load.samples.filter((s) => s.sentAt < returnedAt && s.reason === ALLOWED).length;
  totals.checkedAfterRevoke += after.length + immediate.length;
}

describe("after a revocation returns, no replica allows the token", () => {
  it(`RevokeToken through one replica, ${ROUNDS} rounds`, async () => {
    for (let n = 0; n < ROUNDS; n++) await round("token", n);
  }, 120_000);

  it(`RevokeServiceAccount through one replica, ${ROUNDS} rounds`, async () => {
    for (let n = 0; n < ROUNDS; n++) await round("service account", n);
  }, 120_000);

  it("the rounds really raced: calls were allowed up to the revocation and checked right after it", () => {
    expect(totals.allowedBeforeRevoke).toBeGreaterThan(ROUNDS);
    expect(totals.checkedAfterRevoke).toBeGreaterThan(ROUNDS * 2 * 3);
  });
});

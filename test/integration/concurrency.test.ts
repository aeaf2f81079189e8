/**
 * Concurrency rules, through real concurrent grpc-js calls against a real server on PostgreSQL:
 * CreateToken racing RevokeServiceAccount never leaves an active token under a revoked account;
 * concurrent CreateToken never exceeds 50 active tokens; concurrent duplicate names and repeated
 * revocations resolve to exactly one winner and one audit event.
 */
import type { ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenStatus } from "../../src/generated/pokerworks/identity/v1/token";
import { createTestDatabase, sql, startTestServer, type TestDatabase, type TestServer } from "../support/harness";
import { Code, expectError, issuanceApi, type IssuanceApi } from "../support/issuance-api";

let db: TestDatabase;
let server: TestServer;
let api: IssuanceApi;

beforeAll(async () => {
  db = await createTestDatabase();
  // 60 calls queue on one account's row lock while holding pool connections; on a loaded CI
  // machine the default 2 s acquire timeout would turn some into UNAVAILABLE, which is not
  // what these tests are about.
  server = await startTestServer(db.url, { DATABASE_TIMEOUT_MS: "10000" });
  api = issuanceApi(server);
});
afterAll(async () => {
  if (process.env.SHOW_LOGS) console.log(server?.logs.text);
  await server?.stop();
  await db?.drop();
});

const codeOf = (r: PromiseSettledResult<unknown>) => (r.status === "fulfilled" ? "OK" : Code[(r.reason as ServiceError).code]);

function tally(results: PromiseSettledResult<unknown>[]): Record<string, number> {
  const t: Record<string, number> = {};
  for (const r of results) t[codeOf(r)] = (t[codeOf(r)] ?? 0) + 1;
  return t;
}

async function activeUnderRevoked(): Promise<number> {
  const [row] = await sql<{ n: string }>(
    db.url,
    `select count(*) as n from tokens t join service_accounts s on s.id = t.service_account_id where s.status = 'revoked' and t.status = 'active'`,
  );
  return Number(row!.n);
}

describe("CreateToken racing RevokeServiceAccount", () => {
  it("never leaves an active token under a revoked account", async () => {
    const org = "org_race";
    let totalMinted = 0;
    let totalRefused = 0;
    for (let round = 0; round < 6; round++) {
      const sa = (await api.createSa({ organizationId: org, name: `race-${round}` })).serviceAccount!;
      const pre = 3;
      for (let i = 0; i < pre; i++) await api.createToken({ organizationId: org, serviceAccountId: sa.id, label: `pre-${i}` });

      const creates: Promise<Awaited<ReturnType<IssuanceApi["createToken"]>>>[] = [];
      const total = 30;
      const revokeAt = 5 + round * 4; // the revocation lands at a different point of the burst each round
      let revoke: Promise<Awaited<ReturnType<IssuanceApi["revokeSa"]>>> | undefined;
      for (let i = 0; i < total; i++) {
        if (i === revokeAt) revoke = api.revokeSa({ organizationId: org, serviceAccountId: sa.id });
        creates.push(api.createToken({ organizationId: org, serviceAccountId: sa.id, label: `race-${i}` }));
      }
      const results = await Promise.allSettled(creates);
      const revoked = await revoke!;

      // Every CreateToken either succeeded before the revocation or saw the account revoked.
      const t = tally(results);
      expect(Object.keys(t).filter((c) => c !== "OK" && c !== "FAILED_PRECONDITION"), JSON.stringify(t)).toEqual([]);
      for (const r of results) if (r.status === "rejected") await expectError(Promise.reject(r.reason), Code.FAILED_PRECONDITION, "ERROR_REASON_SERVICE_ACCOUNT_REVOKED");

      totalRefused += results.filter((r) => r.status === "rejected").length;
      const minted = results.filter((r) => r.status === "fulfilled").map((r) => (r as PromiseFulfilledResult<{ token?: { id: string } }>).value.token!.id);
      // The revocation revoked exactly the tokens that existed when it committed: the earlier ones and every minted one.
      expect(revoked.revokedTokenCount).toBe(pre + minted.length);
      for (const id of minted) {
        const tok = (await api.getToken(org, id)).token!;
        expect(tok.status).toBe(TokenStatus.TOKEN_STATUS_REVOKED);
        // Revoked with its account, never "before it was created".
        expect(tok.revokeTime!.getTime()).toBeGreaterThanOrEqual(tok.createTime!.getTime());
        expect(tok.revokeTime).toEqual(revoked.serviceAccount!.revokeTime);
      }
      expect((await api.getSa(org, sa.id)).serviceAccount!.activeTokenCount).toBe(0);

      const [row] = await sql<{ active: string; total: string; created_events: string }>(
        db.url,
        `select (select count(*) from tokens where service_account_id = $1 and status = 'active') as active,
                (select count(*) from tokens where service_account_id = $1) as total,
                (select count(*) from audit_events where action = 'token.created' and details->>'service_account_id' = $1) as created_events`,
        [sa.id],
      );
      expect(row).toEqual({ active: "0", total: String(pre + minted.length), created_events: String(pre + minted.length) });
      expect(await activeUnderRevoked()).toBe(0);
      totalMinted += minted.length;
    }
    // The race really happened: some creates won, some lost.
    expect(totalMinted).toBeGreaterThan(0);
    expect(totalRefused).toBeGreaterThan(0);
  }, 60_000);
});

describe("concurrent CreateToken", () => {
  it("never exceeds 50 active tokens per service account", async () => {
    const org = "org_limit_race";
    const sa = (await api.createSa({ organizationId: org, name: "busy" })).serviceAccount!;
    for (let i = 0; i < 10; i++) await api.createToken({ organizationId: org, serviceAccountId: sa.id, label: `pre-${i}` });
    const results = await Promise.allSettled(Array.from({ length: 60 }, (_, i) => api.createToken({ organizationId: org, serviceAccountId: sa.id, label: `burst-${i}` })));
    expect(tally(results), JSON.stringify(tally(results))).toEqual({ OK: 40, RESOURCE_EXHAUSTED: 20 });
    for (const r of results) if (r.status === "rejected") await expectError(Promise.reject(r.reason), Code.RESOURCE_EXHAUSTED, "ERROR_REASON_TOKEN_LIMIT_REACHED");
    const [row] = await sql<{ n: string }>(db.url, `select count(*) as n from tokens where service_account_id = $1 and status = 'active'`, [sa.id]);
    expect(row!.n).toBe("50");
    expect((await api.getSa(org, sa.id)).serviceAccount!.activeTokenCount).toBe(50);
  }, 60_000);

  it("on different service accounts does not interfere", async () => {
    const org = "org_parallel";
    const sas = await Promise.all([0, 1, 2].map(async (i) => (await api.createSa({ organizationId: org, name: `p-${i}` })).serviceAccount!));
    const results = await Promise.allSettled(sas.flatMap((sa) => Array.from({ length: 12 }, () => api.createToken({ organizationId: org, serviceAccountId: sa.id }))));
    expect(tally(results)).toEqual({ OK: 36 });
    for (const sa of sas) expect((await api.getSa(org, sa.id)).serviceAccount!.activeTokenCount).toBe(12);
  });
});

describe("concurrent duplicates and repeats", () => {
  it("concurrent CreateServiceAccount with the same name: one wins, the others are ALREADY_EXISTS", async () => {
    const org = "org_name_race";
    const results = await Promise.allSettled(Array.from({ length: 12 }, () => api.createSa({ organizationId: org, name: "contested" })));
    expect(tally(results)).toEqual({ OK: 1, ALREADY_EXISTS: 11 });
    for (const r of results) if (r.status === "rejected") await expectError(Promise.reject(r.reason), Code.ALREADY_EXISTS, "ERROR_REASON_SERVICE_ACCOUNT_NAME_TAKEN");
    const [row] = await sql<{ sa: string; evt: string }>(
      db.url,
      `select (select count(*) from service_accounts where organization_id = $1) as sa, (select count(*) from audit_events where organization_id = $1) as evt`,
      [org],
    );
    expect(row).toEqual({ sa: "1", evt: "1" });
  });

  it("concurrent renames onto the same name: one wins, the others are ALREADY_EXISTS", async () => {
    const org = "org_rename_race";
    const sas = [];
    for (let i = 0; i < 6; i++) sas.push((await api.createSa({ organizationId: org, name: `orig-${i}` })).serviceAccount!);
    const results = await Promise.allSettled(sas.map((sa) => api.updateSa({ organizationId: org, serviceAccountId: sa.id, name: "target", updateMask: ["name"] })));
    expect(tally(results)).toEqual({ OK: 1, ALREADY_EXISTS: 5 });
    const [row] = await sql<{ n: string }>(db.url, `select count(*) as n from service_accounts where organization_id = $1 and name = 'target'`, [org]);
    expect(row!.n).toBe("1");
  });

  it("concurrent RevokeServiceAccount: one revokes the tokens, the others are no-ops; one audit event", async () => {
    const org = "org_revoke_race";
    const sa = (await api.createSa({ organizationId: org, name: "twice" })).serviceAccount!;
    for (let i = 0; i < 4; i++) await api.createToken({ organizationId: org, serviceAccountId: sa.id });
    const results = await Promise.all(Array.from({ length: 8 }, () => api.revokeSa({ organizationId: org, serviceAccountId: sa.id })));
    expect(results.map((r) => r.revokedTokenCount).sort((a, b) => b - a)).toEqual([4, 0, 0, 0, 0, 0, 0, 0]);
    const revokeTimes = new Set(results.map((r) => r.serviceAccount!.revokeTime!.getTime()));
    expect(revokeTimes.size).toBe(1);
    const [row] = await sql<{ n: string }>(db.url, `select count(*) as n from audit_events where target_id = $1 and action = 'service_account.revoked'`, [sa.id]);
    expect(row!.n).toBe("1");
  });

  it("concurrent updates of one account: timestamps follow commit order", async () => {
    const org = "org_update_race";
    const sa = (await api.createSa({ organizationId: org, name: "u" })).serviceAccount!;
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => api.updateSa({ organizationId: org, serviceAccountId: sa.id, description: `r${round}-${i}`, updateMask: ["description"] })),
      );
      expect(results).toHaveLength(10);
    }
    const events = await sql<{ occur_time: Date; to: string }>(
      db.url,
      `select occur_time, details->'changes'->'description'->>'to' as to from audit_events where target_id = $1 and action = 'service_account.updated' order by seq`,
      [sa.id],
    );
    expect(events).toHaveLength(30);
    for (let i = 1; i < events.length; i++) expect(events[i]!.occur_time.getTime()).toBeGreaterThanOrEqual(events[i - 1]!.occur_time.getTime());
    const final = (await api.getSa(org, sa.id)).serviceAccount!;
    // The last committed change is what the account shows, with the latest update_time.
    expect(final.description).toBe(events[events.length - 1]!.to);
    expect(final.updateTime).toEqual(events[events.length - 1]!.occur_time);
  });

  it("concurrent RevokeToken: one audit event", async () => {
    const org = "org_revoke_tok_race";
    const sa = (await api.createSa({ organizationId: org, name: "t" })).serviceAccount!;
    const tok = (await api.createToken({ organizationId: org, serviceAccountId: sa.id })).token!;
    const results = await Promise.all(Array.from({ length: 8 }, () => api.revokeToken({ organizationId: org, tokenId: tok.id })));
    expect(new Set(results.map((r) => r.token!.revokeTime!.getTime())).size).toBe(1);
    const [row] = await sql<{ n: string }>(db.url, `select count(*) as n from audit_events where target_id = $1 and action = 'token.revoked'`, [tok.id]);
    expect(row!.n).toBe("1");
  });
});

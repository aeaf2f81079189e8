import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DecisionReason } from "../../src/generated/pokerworks/identity/v1/authorization_service";
import { TokenStatus } from "../../src/generated/pokerworks/identity/v1/token";
import { LeakOutcome } from "../../src/generated/pokerworks/identity/v1/token_service";
import { OrganizationPolicyServiceClient } from "../../src/generated/pokerworks/identity/v1/organization_policy_service";
import { checksum, generateToken } from "../../src/tokens/token-format";
import { credentials } from "@grpc/grpc-js";
import { call, createTestDatabase, failure, sql, startTestServer, type TestDatabase, type TestServer, tokenActor, userActor } from "../support/harness";

let db: TestDatabase;
let server: TestServer;
let policies: OrganizationPolicyServiceClient;
let orgSeq = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db.url, { LAST_USED_FLUSH_INTERVAL_MS: "50" });
  policies = new OrganizationPolicyServiceClient(server.container.address, credentials.createInsecure());
});
afterAll(async () => {
  policies?.close();
  await server?.stop();
  await db?.drop();
});

const org = () => `org_life_${++orgSeq}`;

async function account(organizationId: string) {
  const { serviceAccounts } = server.clients;
  const res = await call(serviceAccounts.createServiceAccount.bind(serviceAccounts), { organizationId, name: `sa-${Math.random()}`, description: "", actor: userActor() });
  return res.serviceAccount!;
}

async function token(organizationId: string, serviceAccountId: string, extra: Partial<{ scopes: string[]; projectIds: string[]; environments: string[]; expireTime: Date }> = {}) {
  const { tokens } = server.clients;
  return call(tokens.createToken.bind(tokens), {
    organizationId,
    serviceAccountId,
    label: "ci",
    scopes: extra.scopes ?? ["projects:read", "usage:read"],
    projectIds: extra.projectIds ?? [],
    environments: extra.environments ?? [],
    expireTime: extra.expireTime,
    actor: userActor(),
  });
}

async function authorize(secret: string, scope = "projects:read") {
  const { authorization } = server.clients;
  return call(authorization.authorize.bind(authorization), { token: secret, scope, projectId: "", environment: "", organizationId: "" });
}

async function auditActions(organizationId: string): Promise<{ action: string; target_id: string; actor_kind: string; actor_id: string; details: Record<string, unknown> }[]> {
  return sql(db.url, "select action, target_id, actor_kind, actor_id, details from audit_events where organization_id = $1 order by seq", [organizationId]);
}

describe("RotateToken", () => {
  it("mints a replacement with the same grants; the old token keeps working, marked superseded, until the overlap ends", async () => {
    const o = org();
    const sa = await account(o);
    const old = await token(o, sa.id, { scopes: ["usage:read", "projects:read"], projectIds: ["p1", "p2"], environments: ["live"] });
    expect((await authorize(old.secret)).principal?.supersededByTokenId).toBe("");
    const { tokens } = server.clients;
    const rotated = await call(tokens.rotateToken.bind(tokens), { organizationId: o, tokenId: old.token!.id, overlap: { seconds: 2, nanos: 0 }, actor: userActor() });

    expect(rotated.secret).toMatch(/^pw_mgmt_[0-9A-Za-z]{38}$/);
    expect(rotated.secret).not.toBe(old.secret);
    expect(rotated.token).toMatchObject({ serviceAccountId: sa.id, label: "ci", scopes: ["usage:read", "projects:read"], projectIds: ["p1", "p2"], environments: ["live"], replacesTokenId: old.token!.id, status: TokenStatus.TOKEN_STATUS_ACTIVE });
    expect(rotated.previousToken?.supersededByTokenId).toBe(rotated.token!.id);
    expect(rotated.previousToken?.status).toBe(TokenStatus.TOKEN_STATUS_ACTIVE);
    const overlapEnd = rotated.previousToken!.expireTime!.getTime();
    expect(overlapEnd - Date.now()).toBeGreaterThan(500);
    expect(overlapEnd - Date.now()).toBeLessThanOrEqual(2000);

    // The new one works at once; the old one still works, and says it is superseded.
    expect((await authorize(rotated.secret)).allowed).toBe(true);
    server.container.authorizer.forget(); // the old record may be cached from before the rotation
    const during = await authorize(old.secret);
    expect(during.allowed).toBe(true);
    expect(during.principal?.supersededByTokenId).toBe(rotated.token!.id);

    await new Promise((r) => setTimeout(r, overlapEnd - Date.now() + 50));
    const after = await authorize(old.secret);
    expect(after.allowed).toBe(false);
    expect(after.reason).toBe(DecisionReason.DECISION_REASON_TOKEN_EXPIRED);
    const read = await call(tokens.getToken.bind(tokens), { organizationId: o, tokenId: old.token!.id });
    expect(read.token?.status).toBe(TokenStatus.TOKEN_STATUS_EXPIRED);
    expect(JSON.stringify(read)).not.toContain(old.secret);

    const events = await auditActions(o);
    const rotation = events.filter((e) => e.action === "token.rotated");
    expect(rotation).toHaveLength(1);
    expect(rotation[0]).toMatchObject({ target_id: old.token!.id, actor_id: "user_alice" });
    expect(rotation[0]!.details.new_token_id).toBe(rotated.token!.id);
    expect(JSON.stringify(events)).not.toContain(rotated.secret);
  });

  it("with a zero overlap revokes the old token at once", async () => {
    const o = org();
    const sa = await account(o);
    const old = await token(o, sa.id);
    expect((await authorize(old.secret)).allowed).toBe(true); // warm the cache
    const { tokens } = server.clients;
    const rotated = await call(tokens.rotateToken.bind(tokens), { organizationId: o, tokenId: old.token!.id, overlap: { seconds: 0, nanos: 0 }, actor: userActor() });
    expect(rotated.previousToken?.status).toBe(TokenStatus.TOKEN_STATUS_REVOKED);
    const denied = await authorize(old.secret);
    expect(denied.allowed).toBe(false);
    expect(denied.reason).toBe(DecisionReason.DECISION_REASON_TOKEN_REVOKED);
    expect((await authorize(rotated.secret)).allowed).toBe(true);
  });

  it("defaults to a 24 hour overlap, and gives the new token the old one's lifetime", async () => {
    const o = org();
    const sa = await account(o);
    const lifetimeMs = 7 * 24 * 3600 * 1000;
    const old = await token(o, sa.id, { expireTime: new Date(Date.now() + lifetimeMs) });
    const { tokens } = server.clients;
    const before = Date.now();
    const rotated = await call(tokens.rotateToken.bind(tokens), { organizationId: o, tokenId: old.token!.id, actor: userActor() });
    const overlap = rotated.previousToken!.expireTime!.getTime() - before;
    expect(overlap).toBeGreaterThan(24 * 3600 * 1000 - 5000);
    expect(overlap).toBeLessThan(24 * 3600 * 1000 + 5000);
    const lifetime = rotated.token!.expireTime!.getTime() - rotated.token!.createTime!.getTime();
    expect(Math.abs(lifetime - lifetimeMs)).toBeLessThan(5000);
  });

  it("refuses to rotate a superseded, revoked or unknown token, a bad overlap, and a management token actor", async () => {
    const o = org();
    const sa = await account(o);
    const t = await token(o, sa.id);
    const { tokens } = server.clients;
    await call(tokens.rotateToken.bind(tokens), { organizationId: o, tokenId: t.token!.id, actor: userActor() });
    const twice = await failure(call(tokens.rotateToken.bind(tokens), { organizationId: o, tokenId: t.token!.id, actor: userActor() }));
    expect(twice.code).toBe(status.FAILED_PRECONDITION);
    expect(twice.reason).toBe("ERROR_REASON_TOKEN_NOT_ROTATABLE");

    const r = await token(o, sa.id);
    await call(tokens.revokeToken.bind(tokens), { organizationId: o, tokenId: r.token!.id, actor: userActor() });
    expect((await failure(call(tokens.rotateToken.bind(tokens), { organizationId: o, tokenId: r.token!.id, actor: userActor() }))).code).toBe(status.FAILED_PRECONDITION);

    expect((await failure(call(tokens.rotateToken.bind(tokens), { organizationId: o, tokenId: "tok_missing", actor: userActor() }))).code).toBe(status.NOT_FOUND);
    expect((await failure(call(tokens.rotateToken.bind(tokens), { organizationId: "org_other", tokenId: r.token!.id, actor: userActor() }))).code).toBe(status.NOT_FOUND);

    const u = await token(o, sa.id);
    for (const overlap of [{ seconds: -1, nanos: 0 }, { seconds: 31 * 24 * 3600, nanos: 0 }]) {
      const bad = await failure(call(tokens.rotateToken.bind(tokens), { organizationId: o, tokenId: u.token!.id, overlap, actor: userActor() }));
      expect(bad.code).toBe(status.INVALID_ARGUMENT);
      expect(bad.fieldViolations.map((v) => v.field)).toContain("overlap");
    }
    const mgmt = await failure(call(tokens.rotateToken.bind(tokens), { organizationId: o, tokenId: u.token!.id, actor: tokenActor() }));
    expect(mgmt.code).toBe(status.PERMISSION_DENIED);
    // Nothing was written by the refused calls.
    const rows = await sql<{ n: string }>(db.url, "select count(*) as n from tokens where replaces_token_id = $1", [u.token!.id]);
    expect(rows[0]!.n).toBe("0");
  });
});

describe("organization token policy", () => {
  it("defaults to no limits, and once set, CreateToken and RotateToken refuse tokens that break it", async () => {
    const o = org();
    const sa = await account(o);
    const initial = await call(policies.getTokenPolicy.bind(policies), { organizationId: o });
    expect(initial.policy).toMatchObject({ organizationId: o, requireExpiry: false });
    expect(initial.policy?.maxTokenLifetime).toBeUndefined();

    const noExpiry = await token(o, sa.id); // allowed before the policy exists
    const updated = await call(policies.updateTokenPolicy.bind(policies), { organizationId: o, maxTokenLifetime: { seconds: 3600, nanos: 0 }, requireExpiry: true, actor: userActor("admin") });
    expect(updated.policy).toMatchObject({ organizationId: o, maxTokenLifetime: { seconds: 3600, nanos: 0 }, requireExpiry: true });
    expect((await call(policies.getTokenPolicy.bind(policies), { organizationId: o })).policy?.updatedBy).toEqual(userActor("admin"));

    const { tokens } = server.clients;
    const missing = await failure(token(o, sa.id));
    expect(missing.code).toBe(status.FAILED_PRECONDITION);
    expect(missing.reason).toBe("ERROR_REASON_TOKEN_POLICY_VIOLATION");
    expect(missing.message).toMatch(/require_expiry/);
    const tooLong = await failure(token(o, sa.id, { expireTime: new Date(Date.now() + 7200_000) }));
    expect(tooLong.code).toBe(status.FAILED_PRECONDITION);
    expect(tooLong.message).toMatch(/max_token_lifetime/);
    const ok = await token(o, sa.id, { expireTime: new Date(Date.now() + 1800_000) });
    expect(ok.token?.status).toBe(TokenStatus.TOKEN_STATUS_ACTIVE);

    // Rotating the old never-expiring token must pick an expiry the policy allows.
    const rotateRefused = await failure(call(tokens.rotateToken.bind(tokens), { organizationId: o, tokenId: noExpiry.token!.id, actor: userActor() }));
    expect(rotateRefused.code).toBe(status.FAILED_PRECONDITION);
    expect(rotateRefused.reason).toBe("ERROR_REASON_TOKEN_POLICY_VIOLATION");
    const rotated = await call(tokens.rotateToken.bind(tokens), { organizationId: o, tokenId: noExpiry.token!.id, expireTime: new Date(Date.now() + 600_000), actor: userActor() });
    expect(rotated.token?.expireTime).toBeInstanceOf(Date);

    // Lowering the maximum does not shorten existing tokens.
    const before = (await call(tokens.getToken.bind(tokens), { organizationId: o, tokenId: ok.token!.id })).token!.expireTime!.getTime();
    await call(policies.updateTokenPolicy.bind(policies), { organizationId: o, maxTokenLifetime: { seconds: 60, nanos: 0 }, requireExpiry: true, actor: userActor("admin") });
    const after = (await call(tokens.getToken.bind(tokens), { organizationId: o, tokenId: ok.token!.id })).token!;
    expect(after.expireTime!.getTime()).toBe(before);
    expect(after.status).toBe(TokenStatus.TOKEN_STATUS_ACTIVE);

    const events = (await auditActions(o)).filter((e) => e.action === "token_policy.updated");
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({ target_id: o, actor_id: "admin" });
  });

  it("validates the policy and refuses management token actors", async () => {
    const o = org();
    const bad = await failure(call(policies.updateTokenPolicy.bind(policies), { organizationId: o, maxTokenLifetime: { seconds: 10, nanos: 0 }, requireExpiry: false, actor: userActor() }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.fieldViolations[0]?.field).toBe("max_token_lifetime");
    const mgmt = await failure(call(policies.updateTokenPolicy.bind(policies), { organizationId: o, requireExpiry: true, actor: tokenActor() }));
    expect(mgmt.code).toBe(status.PERMISSION_DENIED);
    const badOrg = await failure(call(policies.getTokenPolicy.bind(policies), { organizationId: "bad org" }));
    expect(badOrg.code).toBe(status.INVALID_ARGUMENT);
    expect((await sql(db.url, "select * from token_policies where organization_id = $1", [o])).length).toBe(0);
  });
});

describe("ReportLeakedTokens", () => {
  it("validates each string offline, revokes real active tokens at once, audits them, and never says whose they were", async () => {
    const o = org();
    const sa = await account(o);
    const live = await token(o, sa.id);
    const gone = await token(o, sa.id);
    expect((await authorize(live.secret)).allowed).toBe(true); // warm cache on this replica
    const { tokens } = server.clients;
    await call(tokens.revokeToken.bind(tokens), { organizationId: o, tokenId: gone.token!.id, actor: userActor() });
    const unknown = generateToken();
    const badChecksum = live.secret.slice(0, -6) + (live.secret.slice(-6) === "000000" ? "000001" : "000000");
    const body = "pw_mgmt_" + "A".repeat(32);
    expect(checksum(body)).toHaveLength(6);

    const res = await call(tokens.reportLeakedTokens.bind(tokens), {
      tokens: [live.secret, live.secret, gone.secret, unknown, badChecksum, "hello"],
      source: "github",
      url: "https://github.com/acme/repo/blob/main/.env",
    });
    expect(res.results.map((r) => r.outcome)).toEqual([
      LeakOutcome.LEAK_OUTCOME_REVOKED,
      LeakOutcome.LEAK_OUTCOME_ALREADY_INACTIVE,
      LeakOutcome.LEAK_OUTCOME_ALREADY_INACTIVE,
      LeakOutcome.LEAK_OUTCOME_UNKNOWN_TOKEN,
      LeakOutcome.LEAK_OUTCOME_NOT_A_TOKEN,
      LeakOutcome.LEAK_OUTCOME_NOT_A_TOKEN,
    ]);
    expect(res.results.map((r) => r.wellFormed)).toEqual([true, true, true, true, false, false]);
    const answer = JSON.stringify(res);
    expect(answer).not.toContain(o);
    expect(answer).not.toContain(sa.id);
    expect(answer).not.toContain(live.token!.id);
    expect(answer).not.toContain(live.secret);

    const denied = await authorize(live.secret);
    expect(denied.allowed).toBe(false);
    expect(denied.reason).toBe(DecisionReason.DECISION_REASON_TOKEN_REVOKED);
    const events = (await auditActions(o)).filter((e) => e.action === "token.leaked");
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ target_id: live.token!.id, actor_kind: "system", actor_id: "secret_scanning:github" });
    expect(events[0]!.details).toMatchObject({ source: "github", url: "https://github.com/acme/repo/blob/main/.env" });
  });

  it("refuses empty or oversized reports and a bad source or url", async () => {
    const { tokens } = server.clients;
    for (const req of [
      { tokens: [], source: "github", url: "" },
      { tokens: Array.from({ length: 101 }, () => "x"), source: "github", url: "" },
      { tokens: ["x"], source: "", url: "" },
      { tokens: ["x"], source: "github", url: "javascript:alert(1)" },
    ]) {
      const err = await failure(call(tokens.reportLeakedTokens.bind(tokens), req));
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.fieldViolations.length).toBeGreaterThan(0);
    }
  });
});

describe("RevokeTokensIssuedBefore", () => {
  it("revokes every active token created before the instant, one audit event each, and leaves later ones", async () => {
    const o = org();
    const a = await account(o);
    const b = await account(o);
    const t1 = await token(o, a.id);
    const t2 = await token(o, b.id);
    await new Promise((r) => setTimeout(r, 20));
    const cutoff = new Date();
    await new Promise((r) => setTimeout(r, 20));
    const t3 = await token(o, a.id);
    const other = org();
    const otherSa = await account(other);
    const foreign = await token(other, otherSa.id);
    for (const t of [t1, t2, t3]) expect((await authorize(t.secret)).allowed).toBe(true);

    const { tokens } = server.clients;
    const res = await call(tokens.revokeTokensIssuedBefore.bind(tokens), { organizationId: o, serviceAccountId: "", issuedBefore: cutoff, actor: userActor() });
    expect(res.revokedTokenCount).toBe(2);
    expect(res.revokedTokenIds.sort()).toEqual([t1.token!.id, t2.token!.id].sort());
    expect((await authorize(t1.secret)).reason).toBe(DecisionReason.DECISION_REASON_TOKEN_REVOKED);
    expect((await authorize(t2.secret)).reason).toBe(DecisionReason.DECISION_REASON_TOKEN_REVOKED);
    expect((await authorize(t3.secret)).allowed).toBe(true);
    expect((await authorize(foreign.secret)).allowed).toBe(true);
    const events = (await auditActions(o)).filter((e) => e.action === "token.revoked");
    expect(events.map((e) => e.target_id).sort()).toEqual([t1.token!.id, t2.token!.id].sort());

    // Scoped to one service account; repeating is a no-op.
    const scoped = await call(tokens.revokeTokensIssuedBefore.bind(tokens), { organizationId: o, serviceAccountId: a.id, issuedBefore: new Date(), actor: userActor() });
    expect(scoped.revokedTokenIds).toEqual([t3.token!.id]);
    const again = await call(tokens.revokeTokensIssuedBefore.bind(tokens), { organizationId: o, serviceAccountId: "", issuedBefore: new Date(), actor: userActor() });
    expect(again.revokedTokenCount).toBe(0);
  });

  it("refuses a missing or far-future instant, an unknown service account and a management token actor", async () => {
    const o = org();
    const { tokens } = server.clients;
    const none = await failure(call(tokens.revokeTokensIssuedBefore.bind(tokens), { organizationId: o, serviceAccountId: "", actor: userActor() }));
    expect(none.fieldViolations[0]?.field).toBe("issued_before");
    const future = await failure(call(tokens.revokeTokensIssuedBefore.bind(tokens), { organizationId: o, serviceAccountId: "", issuedBefore: new Date(Date.now() + 3600_000), actor: userActor() }));
    expect(future.code).toBe(status.INVALID_ARGUMENT);
    const missing = await failure(call(tokens.revokeTokensIssuedBefore.bind(tokens), { organizationId: o, serviceAccountId: "sa_missing", issuedBefore: new Date(), actor: userActor() }));
    expect(missing.code).toBe(status.NOT_FOUND);
    const mgmt = await failure(call(tokens.revokeTokensIssuedBefore.bind(tokens), { organizationId: o, serviceAccountId: "", issuedBefore: new Date(), actor: tokenActor() }));
    expect(mgmt.code).toBe(status.PERMISSION_DENIED);
  });
});

describe("usage", () => {
  it("records the last decision's scope with last_used_time, visible in GetToken and ListTokens", async () => {
    const o = org();
    const sa = await account(o);
    const t = await token(o, sa.id);
    await authorize(t.secret, "usage:read");
    await server.container.lastUsed.flush();
    const { tokens } = server.clients;
    const read = (await call(tokens.getToken.bind(tokens), { organizationId: o, tokenId: t.token!.id })).token!;
    expect(read.lastUsedTime).toBeInstanceOf(Date);
    expect(read.lastUsedScope).toBe("usage:read");
    expect(read.lastUsedCaller).toBe(""); // no mutual TLS here: the caller is not proven
    const listed = await call(tokens.listTokens.bind(tokens), { organizationId: o, serviceAccountId: sa.id, pageSize: 0, pageToken: "", includeInactive: false });
    expect(listed.tokens[0]?.lastUsedScope).toBe("usage:read");
  });
});

describe("rotation across replicas", () => {
  it("another replica with the old token cached sees it superseded, and expired at the end of the overlap, at once", async () => {
    const { testRedisPrefix, startTestServer: start } = await import("../support/harness");
    const prefix = testRedisPrefix();
    // Long cache TTL: without the change marker the other replica would trust its cached record for minutes.
    const a = await start(db.url, { REDIS_KEY_PREFIX: prefix, TOKEN_CACHE_TTL_MS: "300000" });
    const b = await start(db.url, { REDIS_KEY_PREFIX: prefix, TOKEN_CACHE_TTL_MS: "300000" });
    try {
      const o = org();
      const sa = await call(a.clients.serviceAccounts.createServiceAccount.bind(a.clients.serviceAccounts), { organizationId: o, name: "x", description: "", actor: userActor() });
      const old = await call(a.clients.tokens.createToken.bind(a.clients.tokens), {
        organizationId: o,
        serviceAccountId: sa.serviceAccount!.id,
        label: "l",
        scopes: ["org:read"],
        projectIds: [],
        environments: [],
        actor: userActor(),
      });
      const q = { token: old.secret, scope: "org:read", projectId: "", environment: "", organizationId: "" };
      const onB = () => call(b.clients.authorization.authorize.bind(b.clients.authorization), q);
      expect((await onB()).principal?.supersededByTokenId).toBe(""); // cached on B
      const rotated = await call(a.clients.tokens.rotateToken.bind(a.clients.tokens), { organizationId: o, tokenId: old.token!.id, overlap: { seconds: 1, nanos: 0 }, actor: userActor() });
      const during = await onB();
      expect(during.allowed).toBe(true);
      expect(during.principal?.supersededByTokenId).toBe(rotated.token!.id);
      expect(during.principal?.expireTime?.getTime()).toBe(rotated.previousToken!.expireTime!.getTime());
      await new Promise((r) => setTimeout(r, rotated.previousToken!.expireTime!.getTime() - Date.now() + 20));
      const after = await onB();
      expect(after.allowed).toBe(false);
      expect(after.reason).toBe(DecisionReason.DECISION_REASON_TOKEN_EXPIRED);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});

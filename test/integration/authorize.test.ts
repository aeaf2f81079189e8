/**
 * Issue 3, Authorize through gRPC against PostgreSQL and Redis: every DecisionReason in its
 * order of precedence, every restriction rule of the product page, the principal, messages,
 * invalid requests, expiry at the boundary, last_used_time, and proof that product keys and
 * malformed tokens never reach the database.
 */
import { status as Code } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuthorizeResponse } from "../../src/generated/pokerworks/identity/v1/authorization_service";
import { HUMAN_ONLY_ACTIONS, LAUNCH_SCOPES } from "../../src/shared/scopes";
import {
  authorize,
  createServiceAccount,
  createToken,
  DecisionReason,
  type Issued,
  randomBase62,
  reasonName,
  revokeServiceAccount,
  revokeToken,
  sleep,
  waitFor,
  wellFormedToken,
} from "../support/authz";
import { call, createTestDatabase, failure, sql, startTestServer, type TestDatabase, type TestServer } from "../support/harness";
import { TcpProxy } from "../support/tcp-proxy";

const R = DecisionReason;
const ORG = "org_authz";
const FLUSH_MS = 200;

let db: TestDatabase;
let server: TestServer;
const t: Record<string, Issued> = {};
/** The grants each fixture token was created with, to check the principal. */
const grants: Record<string, { scopes: string[]; projectIds: string[]; environments: string[]; expireTime?: Date }> = {};
let doomedSa = "";
let shortExpiry = 0;

async function issue(key: string, saId: string, grant: { scopes: string[]; projectIds?: string[]; environments?: string[]; expireTime?: Date }): Promise<void> {
  t[key] = await createToken(server.clients, ORG, saId, { ...grant, label: key });
  grants[key] = { scopes: grant.scopes, projectIds: grant.projectIds ?? [], environments: grant.environments ?? [], expireTime: grant.expireTime };
}

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db.url, { LAST_USED_FLUSH_INTERVAL_MS: String(FLUSH_MS) });
  const c = server.clients;

  // Tokens that expire soon first, so the wait for them is mostly spent creating the others.
  shortExpiry = Date.now() + 2500;
  doomedSa = await createServiceAccount(c, ORG, "doomed");
  const otherSa = await createServiceAccount(c, ORG, "other");
  await issue("saRevokedAll", doomedSa, { scopes: ["projects:read"], expireTime: new Date(shortExpiry) }); // + token revoked + expired
  await issue("saRevokedExpired", doomedSa, { scopes: ["projects:read"], expireTime: new Date(shortExpiry) }); // + expired
  await issue("saRevokedTokenRevoked", doomedSa, { scopes: ["projects:read"] }); // + token revoked
  await issue("saRevoked", doomedSa, { scopes: ["projects:read"] });
  await issue("tokRevokedExpired", otherSa, { scopes: ["projects:read"], expireTime: new Date(shortExpiry) });
  await issue("expired", otherSa, { scopes: ["projects:read"], expireTime: new Date(shortExpiry) });
  await issue("tokRevoked", otherSa, { scopes: ["projects:read"] });
  // Warm the cache with the to-be-revoked tokens while they are still good.
  for (const key of ["saRevokedAll", "saRevokedExpired", "saRevokedTokenRevoked", "saRevoked", "tokRevokedExpired", "expired", "tokRevoked"]) {
    const d = await authorize(c, { token: t[key]!.secret, scope: "projects:read" });
    expect(d.allowed, key).toBe(true);
  }

  const main = await createServiceAccount(c, ORG, "main");
  const PROJECT_SCOPES = LAUNCH_SCOPES.filter((s) => s !== "billing:read" && s !== "projects:create");
  await issue("full", main, { scopes: [...LAUNCH_SCOPES] });
  await issue("readOnly", main, { scopes: ["projects:read"] });
  await issue("envTest", main, { scopes: [...LAUNCH_SCOPES], environments: ["test"] });
  await issue("envBoth", main, { scopes: ["usage:read", "audit_log:read"], environments: ["test", "live"] });
  await issue("proj", main, { scopes: PROJECT_SCOPES, projectIds: ["p1", "p2"] });
  await issue("projEnv", main, { scopes: ["usage:read", "audit_log:read", "api_keys:create"], projectIds: ["p1"], environments: ["live"] });
  // Issuance refuses billing:read and projects:create together with project_ids, so a
  // project-restricted token holding them can only be a row written before that rule (or by
  // hand). Authorize must still refuse them as account-level actions.
  await issue("legacyProj", main, { scopes: ["projects:read"], projectIds: ["p1"] });
  await sql(db.url, `update tokens set scopes = array['projects:read', 'billing:read', 'projects:create'] where id = $1`, [t.legacyProj!.tokenId]);
  grants.legacyProj!.scopes = ["projects:read", "billing:read", "projects:create"];
  for (const key of ["lastUsed", "lastUsedDirect", "lastUsedOnStop", "cachedForProxy"]) await issue(key, main, { scopes: ["projects:read"] });

  // Revocations, in the order that builds each combination.
  await sleep(Math.max(0, shortExpiry - Date.now() + 50));
  await revokeToken(c, t.saRevokedAll!);
  await revokeToken(c, t.saRevokedTokenRevoked!);
  await revokeToken(c, t.tokRevokedExpired!);
  await revokeToken(c, t.tokRevoked!);
  await revokeServiceAccount(c, ORG, doomedSa);
});

afterAll(async () => {
  if (process.env.SHOW_LOGS) console.log(server?.logs.text);
  await server?.stop();
  await db?.drop();
});

function expectPrincipal(d: AuthorizeResponse, key: string): void {
  const tok = t[key]!;
  const g = grants[key]!;
  expect(d.principal, `principal for ${key}`).toBeDefined();
  expect(d.principal!.organizationId).toBe(ORG);
  expect(d.principal!.serviceAccountId).toBe(tok.serviceAccountId);
  expect(d.principal!.tokenId).toBe(tok.tokenId);
  expect([...d.principal!.scopes].sort()).toEqual([...g.scopes].sort());
  expect([...d.principal!.projectIds].sort()).toEqual([...g.projectIds].sort());
  expect([...d.principal!.environments].sort()).toEqual([...g.environments].sort());
  if (g.expireTime) expect(d.principal!.expireTime?.getTime()).toBe(g.expireTime.getTime());
  else expect(d.principal!.expireTime).toBeUndefined();
}

/** The message must not contain the token, nor any recognisable piece of it. */
function expectNoSecret(d: AuthorizeResponse, secret: string): void {
  expect(d.message.length).toBeGreaterThan(0);
  // (A bare prefix such as `pw_live_` may of course be named in the explanation.)
  if (secret.length > 8) expect(d.message).not.toContain(secret);
  if (secret.length >= 20) {
    expect(d.message).not.toContain(secret.slice(8, 20));
    expect(d.message).not.toContain(secret.slice(-12));
  }
}

interface Row {
  name: string;
  token: string;
  scope: string;
  projectId?: string;
  environment?: string;
  organizationId?: string;
  want: DecisionReason;
}

const rows: Row[] = [
  // 4. revoked / expired, in precedence order
  { name: "SA revoked + token revoked + expired → SA revoked", token: "saRevokedAll", scope: "projects:read", want: R.DECISION_REASON_SERVICE_ACCOUNT_REVOKED },
  { name: "SA revoked + expired → SA revoked", token: "saRevokedExpired", scope: "projects:read", want: R.DECISION_REASON_SERVICE_ACCOUNT_REVOKED },
  { name: "SA revoked + token revoked → SA revoked", token: "saRevokedTokenRevoked", scope: "projects:read", want: R.DECISION_REASON_SERVICE_ACCOUNT_REVOKED },
  { name: "SA revoked", token: "saRevoked", scope: "projects:read", want: R.DECISION_REASON_SERVICE_ACCOUNT_REVOKED },
  { name: "SA revoked beats org mismatch and scope", token: "saRevoked", scope: "billing:write", organizationId: "org_other", want: R.DECISION_REASON_SERVICE_ACCOUNT_REVOKED },
  { name: "token revoked + expired → token revoked", token: "tokRevokedExpired", scope: "projects:read", want: R.DECISION_REASON_TOKEN_REVOKED },
  { name: "token revoked", token: "tokRevoked", scope: "projects:read", want: R.DECISION_REASON_TOKEN_REVOKED },
  { name: "token revoked beats org mismatch", token: "tokRevoked", scope: "usage:read", organizationId: "org_other", want: R.DECISION_REASON_TOKEN_REVOKED },
  { name: "expired", token: "expired", scope: "projects:read", want: R.DECISION_REASON_TOKEN_EXPIRED },
  { name: "expired beats org mismatch and human-only", token: "expired", scope: "org:delete", organizationId: "org_other", want: R.DECISION_REASON_TOKEN_EXPIRED },
  // 5. organization
  { name: "organization mismatch", token: "full", scope: "projects:read", organizationId: "org_other", want: R.DECISION_REASON_ORGANIZATION_MISMATCH },
  { name: "organization mismatch is exact (case)", token: "full", scope: "projects:read", organizationId: "ORG_AUTHZ", want: R.DECISION_REASON_ORGANIZATION_MISMATCH },
  { name: "organization mismatch beats human-only", token: "full", scope: "billing:write", organizationId: "org_other", want: R.DECISION_REASON_ORGANIZATION_MISMATCH },
  { name: "organization mismatch beats restrictions", token: "projEnv", scope: "usage:read", projectId: "p9", environment: "test", organizationId: "org_other", want: R.DECISION_REASON_ORGANIZATION_MISMATCH },
  { name: "own organization is fine", token: "full", scope: "projects:read", organizationId: ORG, want: R.DECISION_REASON_ALLOWED },
  // 6. human-only actions (every one of them, by a token holding every launch scope)
  ...HUMAN_ONLY_ACTIONS.map((scope) => ({ name: `human-only ${scope}`, token: "full", scope, want: R.DECISION_REASON_NOT_AVAILABLE_TO_SERVICE_ACCOUNTS })),
  { name: "human-only beats restrictions", token: "projEnv", scope: "members:manage", projectId: "p9", environment: "test", want: R.DECISION_REASON_NOT_AVAILABLE_TO_SERVICE_ACCOUNTS },
  // 7. scope
  { name: "scope not granted", token: "readOnly", scope: "usage:read", want: R.DECISION_REASON_SCOPE_NOT_GRANTED },
  { name: "scope not granted beats environment and project", token: "projEnv", scope: "projects:read", projectId: "p9", environment: "test", want: R.DECISION_REASON_SCOPE_NOT_GRANTED },
  { name: "billing:read not held by a project-restricted token → scope not granted", token: "proj", scope: "billing:read", want: R.DECISION_REASON_SCOPE_NOT_GRANTED },
  { name: "projects:create not held by a project-restricted token → scope not granted", token: "proj", scope: "projects:create", want: R.DECISION_REASON_SCOPE_NOT_GRANTED },
  ...LAUNCH_SCOPES.map((scope) => ({ name: `full token may use ${scope}`, token: "full", scope, want: R.DECISION_REASON_ALLOWED })),
  ...LAUNCH_SCOPES.filter((s) => s !== "projects:read").map((scope) => ({ name: `read-only token lacks ${scope}`, token: "readOnly", scope, want: R.DECISION_REASON_SCOPE_NOT_GRANTED })),
  // 8. environment
  { name: "environment not allowed", token: "envTest", scope: "usage:read", environment: "live", want: R.DECISION_REASON_ENVIRONMENT_NOT_ALLOWED },
  { name: "environment allowed", token: "envTest", scope: "usage:read", environment: "test", want: R.DECISION_REASON_ALLOWED },
  { name: "no environment given: restriction does not apply", token: "envTest", scope: "usage:read", want: R.DECISION_REASON_ALLOWED },
  { name: "both environments listed", token: "envBoth", scope: "usage:read", environment: "live", want: R.DECISION_REASON_ALLOWED },
  { name: "unrestricted token in live", token: "full", scope: "usage:read", environment: "live", want: R.DECISION_REASON_ALLOWED },
  { name: "environment beats project", token: "projEnv", scope: "usage:read", projectId: "p9", environment: "test", want: R.DECISION_REASON_ENVIRONMENT_NOT_ALLOWED },
  // 9. project
  { name: "project not allowed", token: "proj", scope: "usage:read", projectId: "p3", want: R.DECISION_REASON_PROJECT_NOT_ALLOWED },
  { name: "project allowed (first)", token: "proj", scope: "usage:read", projectId: "p1", want: R.DECISION_REASON_ALLOWED },
  { name: "project allowed (second)", token: "proj", scope: "api_keys:create", projectId: "p2", environment: "live", want: R.DECISION_REASON_ALLOWED },
  { name: "project match is exact (case)", token: "proj", scope: "usage:read", projectId: "P1", want: R.DECISION_REASON_PROJECT_NOT_ALLOWED },
  { name: "no project given: restriction does not apply", token: "proj", scope: "projects:read", want: R.DECISION_REASON_ALLOWED },
  { name: "unrestricted token on any project", token: "full", scope: "projects:update", projectId: "p77", want: R.DECISION_REASON_ALLOWED },
  { name: "project + environment restricted, both match", token: "projEnv", scope: "api_keys:create", projectId: "p1", environment: "live", want: R.DECISION_REASON_ALLOWED },
  { name: "project beats account level (audit, other project)", token: "proj", scope: "audit_log:read", projectId: "p3", want: R.DECISION_REASON_PROJECT_NOT_ALLOWED },
  // 10. account level
  { name: "billing:read by a project-restricted token", token: "legacyProj", scope: "billing:read", want: R.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED },
  { name: "billing:read by a project-restricted token, naming its project", token: "legacyProj", scope: "billing:read", projectId: "p1", want: R.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED },
  { name: "projects:create by a project-restricted token", token: "legacyProj", scope: "projects:create", want: R.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED },
  { name: "projects:create by a project-restricted token, naming its project", token: "legacyProj", scope: "projects:create", projectId: "p1", want: R.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED },
  { name: "billing:read by an environment-restricted token is fine", token: "envTest", scope: "billing:read", want: R.DECISION_REASON_ALLOWED },
  { name: "projects:create by an environment-restricted token is fine", token: "envTest", scope: "projects:create", environment: "test", want: R.DECISION_REASON_ALLOWED },
  { name: "audit_log:read without project by a project-restricted token", token: "proj", scope: "audit_log:read", want: R.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED },
  { name: "audit_log:read without project by an environment-restricted token", token: "envTest", scope: "audit_log:read", want: R.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED },
  { name: "audit_log:read without project by a token restricted to both environments", token: "envBoth", scope: "audit_log:read", want: R.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED },
  { name: "audit_log:read without project, environment given, env-restricted", token: "envTest", scope: "audit_log:read", environment: "test", want: R.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED },
  { name: "audit_log:read without project by a project+env-restricted token", token: "projEnv", scope: "audit_log:read", environment: "live", want: R.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED },
  { name: "audit_log:read naming an allowed project", token: "proj", scope: "audit_log:read", projectId: "p2", want: R.DECISION_REASON_ALLOWED },
  { name: "audit_log:read naming a project, env-restricted", token: "envTest", scope: "audit_log:read", projectId: "p5", want: R.DECISION_REASON_ALLOWED },
  { name: "audit_log:read without project by an unrestricted token", token: "full", scope: "audit_log:read", want: R.DECISION_REASON_ALLOWED },
  { name: "other scopes by a restricted token have no account-level rule", token: "projEnv", scope: "usage:read", want: R.DECISION_REASON_ALLOWED },
];

describe("Authorize: every reason and restriction rule, table-driven", () => {
  it.each(rows)("$name", async (row) => {
    const secret = t[row.token]!.secret;
    const d = await authorize(server.clients, {
      token: secret,
      scope: row.scope,
      projectId: row.projectId ?? "",
      environment: row.environment ?? "",
      organizationId: row.organizationId ?? "",
    });
    expect(reasonName(d.reason)).toBe(reasonName(row.want));
    expect(d.allowed).toBe(row.want === R.DECISION_REASON_ALLOWED);
    // Identified: the principal is filled, also on denials.
    expectPrincipal(d, row.token);
    expectNoSecret(d, secret);
  });

  it("the table covers every reason from SERVICE_ACCOUNT_REVOKED to ALLOWED", () => {
    const covered = new Set(rows.map((r) => r.want));
    for (let r = R.DECISION_REASON_SERVICE_ACCOUNT_REVOKED; r <= R.DECISION_REASON_ALLOWED; r++) expect(covered.has(r), reasonName(r)).toBe(true);
  });

  it("a project-restricted token's principal lets callers filter to its projects and environments", async () => {
    const d = await authorize(server.clients, { token: t.projEnv!.secret, scope: "usage:read", projectId: "p9" });
    expect(reasonName(d.reason)).toBe("DECISION_REASON_PROJECT_NOT_ALLOWED");
    expect(d.principal?.projectIds).toEqual(["p1"]);
    expect(d.principal?.environments).toEqual(["live"]);
  });

  it("a message never echoes the token, even when a caller passes it as another field", async () => {
    const secret = t.proj!.secret;
    // A token matches the project id pattern; a caller mixing up its arguments must not
    // get the token written into a message that ends up in logs.
    const d = await authorize(server.clients, { token: secret, scope: "usage:read", projectId: secret });
    expect(reasonName(d.reason)).toBe("DECISION_REASON_PROJECT_NOT_ALLOWED");
    expectNoSecret(d, secret);
    const e = await authorize(server.clients, { token: t.full!.secret, scope: "usage:read", organizationId: secret });
    expect(reasonName(e.reason)).toBe("DECISION_REASON_ORGANIZATION_MISMATCH");
    expectNoSecret(e, secret);
  });
});

describe("Authorize: credentials that are not a known management token", () => {
  const productKeys = [
    "pw_test_" + randomBase62(32),
    "pw_live_" + randomBase62(32),
    "pw_live_" + randomBase62(38), // as long as a management token
    "pw_test_x",
    "pw_live_",
  ];
  it.each(productKeys)("product key %s → PRODUCT_KEY_NOT_ACCEPTED, no principal", async (key) => {
    const d = await authorize(server.clients, { token: key, scope: "projects:read" });
    expect(reasonName(d.reason)).toBe("DECISION_REASON_PRODUCT_KEY_NOT_ACCEPTED");
    expect(d.allowed).toBe(false);
    expect(d.principal).toBeUndefined();
    expectNoSecret(d, key);
  });

  it("a product key is refused whatever the scope (product key comes before everything else)", async () => {
    for (const scope of ["billing:write", "usage:read"]) {
      const d = await authorize(server.clients, { token: "pw_live_" + randomBase62(32), scope, organizationId: "org_other" });
      expect(reasonName(d.reason)).toBe("DECISION_REASON_PRODUCT_KEY_NOT_ACCEPTED");
    }
  });

  function malformed(): { name: string; token: string }[] {
    const real = t.full!.secret;
    const flip = (c: string) => (c === "A" ? "B" : "A");
    return [
      { name: "one character short", token: real.slice(0, -1) },
      { name: "one character long", token: real + "0" },
      { name: "prefix only", token: "pw_mgmt_" },
      { name: "empty-ish", token: "x" },
      { name: "far too long", token: real + randomBase62(10_000) },
      { name: "bad checksum (typo in the last character of a real token)", token: real.slice(0, -1) + flip(real.slice(-1)) },
      { name: "bad checksum (typo in the random part of a real token)", token: real.slice(0, 10) + flip(real[10]!) + real.slice(11) },
      { name: "alphabet: '-' in the random part, checksum valid", token: wellFormedToken(randomBase62(31) + "-") },
      { name: "alphabet: '_' in the random part, checksum valid", token: wellFormedToken("_" + randomBase62(31)) },
      { name: "alphabet: non-ASCII letter, checksum valid", token: wellFormedToken(randomBase62(31) + "é") },
      { name: "alphabet: space, checksum valid", token: wellFormedToken(randomBase62(15) + " " + randomBase62(16)) },
      { name: "wrong prefix with a valid checksum", token: wellFormedToken(randomBase62(32), "pw_mgmx_") },
      { name: "upper-case prefix with a valid checksum", token: wellFormedToken(randomBase62(32), "PW_MGMT_") },
      { name: "real token, upper-case prefix", token: "PW_MGMT_" + real.slice(8) },
      { name: "real token, different separator", token: "pw-mgmt_" + real.slice(8) },
      { name: "real token with a trailing newline", token: real + "\n" },
      { name: "real token with a leading space", token: " " + real },
      { name: "Bearer header value", token: "Bearer " + real },
    ];
  }

  it("every malformed variant → TOKEN_MALFORMED, no principal, no echo", async () => {
    for (const m of malformed()) {
      const d = await authorize(server.clients, { token: m.token, scope: "projects:read" });
      expect(reasonName(d.reason), m.name).toBe("DECISION_REASON_TOKEN_MALFORMED");
      expect(d.allowed, m.name).toBe(false);
      expect(d.principal, m.name).toBeUndefined();
      expectNoSecret(d, m.token);
      expectNoSecret(d, t.full!.secret);
    }
  });

  it("a well-formed token that was never issued → TOKEN_UNKNOWN, also when asked again", async () => {
    const never = wellFormedToken();
    expect(never).toMatch(/^pw_mgmt_[0-9A-Za-z]{38}$/);
    for (let i = 0; i < 3; i++) {
      const d = await authorize(server.clients, { token: never, scope: "projects:read", organizationId: ORG });
      expect(reasonName(d.reason)).toBe("DECISION_REASON_TOKEN_UNKNOWN");
      expect(d.allowed).toBe(false);
      expect(d.principal).toBeUndefined();
      expectNoSecret(d, never);
    }
  });

  it("unknown comes before the human-only check (the token is not identified)", async () => {
    const d = await authorize(server.clients, { token: wellFormedToken(), scope: "billing:write" });
    expect(reasonName(d.reason)).toBe("DECISION_REASON_TOKEN_UNKNOWN");
  });
});

describe("Authorize: invalid requests are INVALID_ARGUMENT, never a decision", () => {
  const cases: { name: string; req: { token?: string; scope?: string; environment?: string }; fields: string[] }[] = [
    { name: "empty token", req: { token: "" }, fields: ["token"] },
    { name: "empty scope", req: { scope: "" }, fields: ["scope"] },
    { name: "empty token and scope", req: { token: "", scope: "" }, fields: ["token", "scope"] },
    { name: "unknown scope", req: { scope: "projects:delete" }, fields: ["scope"] },
    { name: "scope with different case", req: { scope: "Projects:Read" }, fields: ["scope"] },
    { name: "scope with white space", req: { scope: "projects:read " }, fields: ["scope"] },
    { name: "environment prod", req: { environment: "prod" }, fields: ["environment"] },
    { name: "environment upper case", req: { environment: "TEST" }, fields: ["environment"] },
    { name: "unknown scope with a product key", req: { token: "pw_test_" + randomBase62(20), scope: "calc:run" }, fields: ["scope"] },
    { name: "bad environment with a malformed token", req: { token: "nope", environment: "staging" }, fields: ["environment"] },
  ];
  it.each(cases)("$name", async ({ req, fields }) => {
    const secret = t.full!.secret;
    const err = await failure(authorize(server.clients, { token: secret, scope: "projects:read", ...req }));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.fieldViolations.map((v) => v.field)).toEqual(fields);
    expect(err.message).not.toContain(secret);
  });
});

describe("Authorize: expiry is exact at expire_time", () => {
  it("allowed until expire_time, TOKEN_EXPIRED from expire_time on", async () => {
    const sa = await createServiceAccount(server.clients, ORG, "expiry");
    const expireTime = new Date(Date.now() + 2000);
    const tok = await createToken(server.clients, ORG, sa, { scopes: ["projects:read"], expireTime });
    const first = await authorize(server.clients, { token: tok.secret, scope: "projects:read" });
    expect(first.allowed).toBe(true);
    const E = first.principal!.expireTime!.getTime();
    expect(E).toBe(expireTime.getTime());

    // Hammer Authorize across the boundary. A call answered before E must be allowed; a call
    // sent at or after E must be expired. (Same host, same clock as the server.)
    await sleep(Math.max(0, E - Date.now() - 400));
    const results: { sent: number; received: number; reason: string }[] = [];
    while (Date.now() < E + 300) {
      const sent = Date.now();
      const d = await authorize(server.clients, { token: tok.secret, scope: "projects:read" });
      results.push({ sent, received: Date.now(), reason: reasonName(d.reason) });
    }
    const before = results.filter((r) => r.received < E);
    const after = results.filter((r) => r.sent >= E);
    expect(before.length).toBeGreaterThan(5);
    expect(after.length).toBeGreaterThan(5);
    for (const r of before) expect(r.reason).toBe("DECISION_REASON_ALLOWED");
    for (const r of after) expect(r.reason).toBe("DECISION_REASON_TOKEN_EXPIRED");
    // The ones in flight exactly at E went one way or the other, never anything else.
    for (const r of results) expect(["DECISION_REASON_ALLOWED", "DECISION_REASON_TOKEN_EXPIRED"]).toContain(r.reason);
  });
});

describe("Authorize: the hot path and revocation on one server", () => {
  it("a token allowed from a warm cache is refused as soon as RevokeToken returns", async () => {
    const sa = await createServiceAccount(server.clients, ORG, "hot-revoke");
    const tok = await createToken(server.clients, ORG, sa, { scopes: ["projects:read"] });
    for (let i = 0; i < 3; i++) expect((await authorize(server.clients, { token: tok.secret, scope: "projects:read" })).allowed).toBe(true);
    await revokeToken(server.clients, tok);
    const d = await authorize(server.clients, { token: tok.secret, scope: "projects:read" });
    expect(reasonName(d.reason)).toBe("DECISION_REASON_TOKEN_REVOKED");
    expect(d.principal?.tokenId).toBe(tok.tokenId);
  });

  it("every token of a service account is refused as soon as RevokeServiceAccount returns", async () => {
    const sa = await createServiceAccount(server.clients, ORG, "hot-revoke-sa");
    const toks = await Promise.all([0, 1, 2].map(() => createToken(server.clients, ORG, sa, { scopes: ["usage:read"] })));
    for (const tok of toks) expect((await authorize(server.clients, { token: tok.secret, scope: "usage:read" })).allowed).toBe(true);
    await revokeServiceAccount(server.clients, ORG, sa);
    for (const tok of toks) {
      const d = await authorize(server.clients, { token: tok.secret, scope: "usage:read" });
      expect(reasonName(d.reason)).toBe("DECISION_REASON_SERVICE_ACCOUNT_REVOKED");
      expect(d.principal?.serviceAccountId).toBe(sa);
    }
  });
});

describe("Authorize: last_used_time", () => {
  const getToken = (tokenId: string) => call(server.clients.tokens.getToken.bind(server.clients.tokens), { organizationId: ORG, tokenId });

  it("becomes visible through GetToken and ListTokens after a flush, and is written at most once a minute", async () => {
    const tok = t.lastUsed!;
    expect((await getToken(tok.tokenId)).token?.lastUsedTime).toBeUndefined();
    const t0 = Date.now();
    expect((await authorize(server.clients, { token: tok.secret, scope: "projects:read" })).allowed).toBe(true);
    const t1 = Date.now();
    let seen: Date | undefined;
    await waitFor("last_used_time", async () => (seen = (await getToken(tok.tokenId)).token?.lastUsedTime) !== undefined, 5000, 50);
    expect(seen!.getTime()).toBeGreaterThanOrEqual(t0);
    expect(seen!.getTime()).toBeLessThanOrEqual(t1);
    const listed = await call(server.clients.tokens.listTokens.bind(server.clients.tokens), {
      organizationId: ORG,
      serviceAccountId: tok.serviceAccountId,
      pageSize: 100,
      pageToken: "",
      includeInactive: false,
    });
    expect(listed.tokens.find((x) => x.id === tok.tokenId)?.lastUsedTime?.getTime()).toBe(seen!.getTime());

    // More uses within the minute (allowed and denied ones) are not written again.
    for (let i = 0; i < 5; i++) {
      await authorize(server.clients, { token: tok.secret, scope: i % 2 ? "projects:read" : "usage:read" });
      await sleep(FLUSH_MS / 2);
    }
    await sleep(FLUSH_MS * 3);
    expect((await getToken(tok.tokenId)).token?.lastUsedTime?.getTime()).toBe(seen!.getTime());
  });

  it("the recorder writes a token at most once per minute of use (real recorder, real PostgreSQL)", async () => {
    const { tokenId } = t.lastUsedDirect!;
    const recorder = server.container.lastUsed;
    const base = Date.now() - 10 * 60_000;
    const stored = async () => (await sql<{ at: Date | null }>(db.url, "select last_used_time as at from tokens where id = $1", [tokenId]))[0]!.at?.getTime() ?? null;
    recorder.touch(tokenId, base);
    await recorder.flush();
    expect(await stored()).toBe(base);
    recorder.touch(tokenId, base + 30_000);
    recorder.touch(tokenId, base + 59_999);
    await recorder.flush();
    expect(await stored()).toBe(base); // within the minute: nothing written
    recorder.touch(tokenId, base + 60_000);
    await recorder.flush();
    expect(await stored()).toBe(base + 60_000);
  });

  it("pending times are flushed when the server stops", async () => {
    const other = await startTestServer(db.url, { LAST_USED_FLUSH_INTERVAL_MS: "60000" });
    const tok = t.lastUsedOnStop!;
    try {
      expect((await authorize(other.clients, { token: tok.secret, scope: "projects:read" })).allowed).toBe(true);
    } finally {
      await other.stop();
    }
    const rows = await sql<{ at: Date | null }>(db.url, "select last_used_time as at from tokens where id = $1", [tok.tokenId]);
    expect(rows[0]!.at).not.toBeNull();
    expect(Date.now() - rows[0]!.at!.getTime()).toBeLessThan(30_000);
  });

  it("the token secret is in no column of any row", async () => {
    const dump = await sql<{ j: string }>(db.url, "select row_to_json(x)::text as j from (select * from tokens) x union all select row_to_json(a)::text from audit_events a");
    const text = dump.map((r) => r.j).join("\n");
    for (const tok of Object.values(t)) expect(text).not.toContain(tok.secret.slice(8));
  });
});

describe("Authorize: product keys, malformed and cached tokens cost no database query", () => {
  let proxy: TcpProxy;
  let viaProxy: TestServer;
  /** Statements this server sent, other than its periodic health probe. */
  const statements = () => proxy.statements.filter((s) => !/^\s*select 1\s*$/i.test(s));

  beforeAll(async () => {
    proxy = new TcpProxy("127.0.0.1", 5432, { countPostgres: true });
    const port = await proxy.start();
    const url = new URL(db.url);
    url.port = String(port);
    viaProxy = await startTestServer(url.toString(), { LAST_USED_FLUSH_INTERVAL_MS: "60000", HEALTH_CHECK_INTERVAL_MS: "60000" });
    // A new Redis key prefix has no epoch yet: the server rebuilds the markers from PostgreSQL
    // in the background at start. Let that settle before counting.
    await waitFor("revocation markers trusted", () => viaProxy.container.revocations.trusted(), 10_000);
  });
  afterAll(async () => {
    proxy?.forward();
    await viaProxy?.stop();
    await proxy?.close();
  });

  it("the probe sees the server's queries (control)", async () => {
    const before = statements().length;
    const d = await authorize(viaProxy.clients, { token: wellFormedToken(), scope: "projects:read" });
    expect(reasonName(d.reason)).toBe("DECISION_REASON_TOKEN_UNKNOWN");
    const sent = statements().slice(before);
    expect(sent.length).toBe(1);
    expect(sent[0]).toMatch(/from tokens/);
  });

  it("hundreds of product keys and malformed tokens send nothing to PostgreSQL", async () => {
    const before = statements().length;
    const connectionsBefore = proxy.connections;
    const calls: Promise<AuthorizeResponse>[] = [];
    for (let i = 0; i < 150; i++) {
      calls.push(authorize(viaProxy.clients, { token: "pw_live_" + randomBase62(32), scope: "usage:read" }));
      calls.push(authorize(viaProxy.clients, { token: wellFormedToken(randomBase62(31) + "-"), scope: "usage:read" }));
      // The real token with a typo in its checksum.
      const real = t.full!.secret;
      const typo = "0123456789".replace(real.slice(-1), "")[i % 9]!;
      calls.push(authorize(viaProxy.clients, { token: real.slice(0, 45) + typo, scope: "usage:read" }));
    }
    const results = await Promise.all(calls);
    for (const d of results) expect(["DECISION_REASON_PRODUCT_KEY_NOT_ACCEPTED", "DECISION_REASON_TOKEN_MALFORMED"]).toContain(reasonName(d.reason));
    await sleep(100);
    expect(statements().slice(before)).toEqual([]);
    expect(proxy.connections).toBe(connectionsBefore);
  });

  it("a flood of the same unknown token costs one query (negative cache)", async () => {
    const never = wellFormedToken();
    const before = statements().length;
    const results = await Promise.all(Array.from({ length: 100 }, () => authorize(viaProxy.clients, { token: never, scope: "projects:read" })));
    for (let i = 0; i < 50; i++) results.push(await authorize(viaProxy.clients, { token: never, scope: "projects:read" }));
    for (const d of results) expect(reasonName(d.reason)).toBe("DECISION_REASON_TOKEN_UNKNOWN");
    expect(statements().slice(before).length).toBe(1);
  });

  it("a token seen recently is decided without a query (in-process cache + Redis)", async () => {
    const tok = t.cachedForProxy!;
    const before = statements().length;
    expect((await authorize(viaProxy.clients, { token: tok.secret, scope: "projects:read" })).allowed).toBe(true);
    expect(statements().slice(before).length).toBe(1); // the lookup
    await viaProxy.container.lastUsed.flush(); // its last_used_time write, out of the way
    const mid = statements().length;
    for (let i = 0; i < 100; i++) {
      const d = await authorize(viaProxy.clients, { token: tok.secret, scope: i % 2 ? "projects:read" : "usage:read", projectId: "p1" });
      expect(reasonName(d.reason)).toBe(i % 2 ? "DECISION_REASON_ALLOWED" : "DECISION_REASON_SCOPE_NOT_GRANTED");
    }
    expect(statements().slice(mid)).toEqual([]);
  });

  it("with PostgreSQL unreachable, product keys and malformed tokens are still answered at once; a real token is UNAVAILABLE", async () => {
    proxy.refuse();
    try {
      const started = Date.now();
      for (let i = 0; i < 50; i++) {
        expect(reasonName((await authorize(viaProxy.clients, { token: "pw_test_" + randomBase62(32), scope: "usage:read" })).reason)).toBe("DECISION_REASON_PRODUCT_KEY_NOT_ACCEPTED");
        expect(reasonName((await authorize(viaProxy.clients, { token: t.full!.secret + "x", scope: "usage:read" })).reason)).toBe("DECISION_REASON_TOKEN_MALFORMED");
      }
      expect(Date.now() - started).toBeLessThan(3000);
      // A token this server has never seen can't be decided: fail closed.
      const err = await failure(authorize(viaProxy.clients, { token: t.readOnly!.secret, scope: "projects:read" }));
      expect(err.code).toBe(Code.UNAVAILABLE);
      expect(err.message).not.toContain(t.readOnly!.secret);
    } finally {
      proxy.forward();
    }
    // And it recovers once PostgreSQL is back.
    await waitFor("recovery", async () => (await authorize(viaProxy.clients, { token: t.readOnly!.secret, scope: "projects:read" }).catch(() => undefined))?.allowed === true, 10_000, 100);
  });
});

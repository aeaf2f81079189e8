/**
 * TokenService through a real grpc-js client against a real server on PostgreSQL: the token
 * format and checksum, what is stored (only SHA-256), reveal-once (no later read, no row, no
 * log line holds the secret), every validation rule, the 50-token limit, revocation and expiry.
 */
import { crc32 } from "node:zlib";
import { describe, expect, it } from "vitest";
import { TokenStatus } from "../../src/generated/pokerworks/identity/v1/token";
import { sql, type TestDatabase, type TestServer, userActor, useTestServer } from "../support/harness";
import { Code, expectError, expectInvalid, issuanceApi, type IssuanceApi, sha256, sleep } from "../support/issuance-api";

let db: TestDatabase;
let server: TestServer;
let api: IssuanceApi;

useTestServer({}, (s, d) => {
  server = s;
  db = d;
  api = issuanceApi(s);
});

const ORG = "org_tok";
let n = 0;
async function newSa(org = ORG) {
  return (await api.createSa({ organizationId: org, name: `sa-${++n}` })).serviceAccount!;
}

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
function expectedChecksum(body: string): string {
  let v = BigInt(crc32(body));
  let out = "";
  do {
    out = BASE62[Number(v % 62n)]! + out;
    v /= 62n;
  } while (v > 0n);
  return out.padStart(6, "0");
}

/** Every text-like value in every column of every table in the database, as text. */
async function everyStoredValue(): Promise<string[]> {
  const cols = await sql<{ table_name: string; column_name: string }>(
    db.url,
    `select table_name, column_name from information_schema.columns where table_schema = 'public' order by table_name, ordinal_position`,
  );
  expect(cols.some((c) => c.table_name === "tokens" && c.column_name === "secret_hash")).toBe(true);
  const values: string[] = [];
  for (const { table_name, column_name } of cols) {
    const rows = await sql<{ v: string | null }>(db.url, `select "${column_name}"::text as v from "${table_name}"`);
    for (const r of rows) if (r.v !== null) values.push(r.v);
  }
  return values;
}

describe("CreateToken", () => {
  it("returns a well-formed secret with a correct CRC32 checksum, and its metadata", async () => {
    const sa = await newSa();
    const expire = new Date(Date.now() + 3_600_000);
    const before = Date.now();
    const res = await api.createToken({
      organizationId: ORG,
      serviceAccountId: sa.id,
      label: "  deploy  ",
      scopes: ["projects:read", "api_keys:create", "projects:read"],
      projectIds: ["proj_a", "proj_b", "proj_a"],
      environments: ["live", "live"],
      expireTime: expire,
      actor: userActor("user_erin"),
    });
    const secret = res.secret;
    expect(secret).toMatch(/^pw_mgmt_[0-9A-Za-z]{32}[0-9A-Za-z]{6}$/);
    expect(secret.slice(40)).toBe(expectedChecksum(secret.slice(0, 40)));

    const t = res.token!;
    expect(t.id).toMatch(/^tok_[0-9A-Za-z]{24}$/);
    expect(t.organizationId).toBe(ORG);
    expect(t.serviceAccountId).toBe(sa.id);
    expect(t.label).toBe("deploy");
    expect(t.prefix).toBe(secret.slice(0, 12));
    expect(t.masked).toBe(`${secret.slice(0, 12)}...${secret.slice(-4)}`);
    expect(t.status).toBe(TokenStatus.TOKEN_STATUS_ACTIVE);
    expect(t.scopes).toEqual(["projects:read", "api_keys:create"]);
    expect(t.projectIds).toEqual(["proj_a", "proj_b"]);
    expect(t.environments).toEqual(["live"]);
    expect(t.expireTime).toEqual(expire);
    expect(t.createTime!.getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(t.revokeTime).toBeUndefined();
    expect(t.lastUsedTime).toBeUndefined();
    expect(t.createdBy).toEqual(userActor("user_erin"));
    expect(JSON.stringify(t)).not.toContain(secret.slice(8, 40));

    expect((await api.getToken(ORG, t.id)).token).toEqual(t);
    expect((await api.getSa(ORG, sa.id)).serviceAccount!.activeTokenCount).toBe(1);
  });

  it("every secret is different and checksummed", async () => {
    const sa = await newSa();
    const secrets = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const { secret } = await api.createToken({ organizationId: ORG, serviceAccountId: sa.id });
      expect(secret.slice(40)).toBe(expectedChecksum(secret.slice(0, 40)));
      secrets.add(secret);
    }
    expect(secrets.size).toBe(20);
  });

  it("stores only the SHA-256 of the secret", async () => {
    const sa = await newSa();
    const { token, secret } = await api.createToken({ organizationId: ORG, serviceAccountId: sa.id });
    const [row] = await sql<Record<string, unknown>>(db.url, `select * from tokens where id = $1`, [token!.id]);
    expect(row).toBeDefined();
    expect(Buffer.isBuffer(row!.secret_hash)).toBe(true);
    expect((row!.secret_hash as Buffer).equals(sha256(secret))).toBe(true);
    expect(row!.prefix).toBe(secret.slice(0, 12));
    expect(row!.last_four).toBe(secret.slice(-4));
    const random = secret.slice(8, 40);
    for (const [col, value] of Object.entries(row!)) {
      const text = Buffer.isBuffer(value) ? value.toString("latin1") + value.toString("hex") : JSON.stringify(value);
      expect(text, `tokens.${col}`).not.toContain(secret);
      expect(text, `tokens.${col}`).not.toContain(random);
      expect(text, `tokens.${col}`).not.toContain(Buffer.from(secret).toString("hex"));
    }
  });

  it("validates the request", async () => {
    const sa = await newSa();
    const base = { organizationId: ORG, serviceAccountId: sa.id };
    await expectInvalid(api.createToken({ ...base, organizationId: "" }), "organization_id");
    await expectInvalid(api.createToken({ ...base, organizationId: "bad org" }), "organization_id");
    await expectInvalid(api.createToken({ ...base, serviceAccountId: "" }), "service_account_id");
    await expectInvalid(api.createToken({ ...base, label: "" }), "label");
    await expectInvalid(api.createToken({ ...base, label: "   " }), "label");
    await expectInvalid(api.createToken({ ...base, label: "l".repeat(101) }), "label");
    await expectInvalid(api.createToken({ ...base, scopes: [] }), "scopes");
    const unknown = await expectInvalid(api.createToken({ ...base, scopes: ["projects:read", "projects:delete"] }), "scopes[1]");
    expect(unknown.fieldViolations.find((v) => v.field === "scopes[1]")!.description).toMatch(/not a scope/);
    await expectInvalid(api.createToken({ ...base, projectIds: ["-nope"] }), "project_ids[0]");
    await expectInvalid(api.createToken({ ...base, projectIds: ["ok", "p".repeat(65)] }), "project_ids[1]");
    await expectInvalid(api.createToken({ ...base, projectIds: Array.from({ length: 101 }, (_, i) => `p${i}`) }), "project_ids");
    await expectInvalid(api.createToken({ ...base, environments: ["prod"] }), "environments[0]");
    await expectInvalid(api.createToken({ ...base, environments: ["test", "staging"] }), "environments[1]");
    await expectInvalid(api.createToken({ ...base, expireTime: new Date(Date.now() - 60_000) }), "expire_time");
    await expectInvalid(api.createToken({ ...base, expireTime: new Date(Date.UTC(10000, 0, 1)) }), "expire_time");
    await expectInvalid(api.createToken({ ...base, label: "tab\tinside" }), "label");
    const c = await expectInvalid(api.createToken({ ...base, scopes: ["projects:create"], projectIds: ["p1"] }), "scopes");
    expect(c.message).toContain("projects:create");
    const b = await expectInvalid(api.createToken({ ...base, scopes: ["billing:read", "org:read"], projectIds: ["p1"] }), "scopes");
    expect(b.message).toContain("billing:read");
    // Nothing was minted by any of those.
    expect((await api.getSa(ORG, sa.id)).serviceAccount!.activeTokenCount).toBe(0);
  });

  it.each([["billing:write"], ["credit_packs:purchase"], ["members:manage"], ["org:delete"]])(
    "refuses the human-only action %s as not available to service accounts",
    async (scope) => {
      const sa = await newSa();
      const e = await expectInvalid(
        api.createToken({ organizationId: ORG, serviceAccountId: sa.id, scopes: ["projects:read", scope] }),
        "scopes[1]",
        "ERROR_REASON_SCOPE_NOT_AVAILABLE_TO_SERVICE_ACCOUNTS",
      );
      expect(e.message).toMatch(/not available to service accounts/);
      expect(e.fieldViolations[0]!.description).toMatch(/not available to service accounts/);
    },
  );

  it("collapses duplicate scopes, project ids and environments; 100 project ids is fine", async () => {
    const sa = await newSa();
    const ids = Array.from({ length: 100 }, (_, i) => `proj-${i}`);
    const t = (
      await api.createToken({
        organizationId: ORG,
        serviceAccountId: sa.id,
        scopes: ["usage:read", "usage:read", "org:read"],
        projectIds: [...ids, ...ids],
        environments: ["test", "live", "test"],
      })
    ).token!;
    expect(t.scopes).toEqual(["usage:read", "org:read"]);
    expect(t.projectIds).toEqual(ids);
    expect(t.environments).toEqual(["test", "live"]);
    const [row] = await sql<{ scopes: string[]; project_ids: string[]; environments: string[] }>(
      db.url,
      `select scopes, project_ids, environments from tokens where id = $1`,
      [t.id],
    );
    expect(row).toEqual({ scopes: ["usage:read", "org:read"], project_ids: ids, environments: ["test", "live"] });
  });

  it("projects:create and billing:read are fine without project restrictions", async () => {
    const sa = await newSa();
    const t = (await api.createToken({ organizationId: ORG, serviceAccountId: sa.id, scopes: ["projects:create", "billing:read"], environments: ["test"] })).token!;
    expect(t.scopes).toEqual(["projects:create", "billing:read"]);
  });

  it("NOT_FOUND for an unknown service account", async () => {
    await expectError(api.createToken({ organizationId: ORG, serviceAccountId: "sa_unknown" }), Code.NOT_FOUND, "ERROR_REASON_SERVICE_ACCOUNT_NOT_FOUND");
  });
});

describe("reveal-once", () => {
  it("the secret appears in no later read, no row and no log line", async () => {
    const org = "org_reveal";
    const sa = await newSa(org);
    const res = await api.createToken({ organizationId: org, serviceAccountId: sa.id, label: "reveal", projectIds: ["proj_r"], scopes: ["usage:read"] });
    const secret = res.secret;
    const random = secret.slice(8, 40);
    const tokenId = res.token!.id;
    // Something that revokes it, too, so revocation paths are covered.
    const other = await api.createToken({ organizationId: org, serviceAccountId: sa.id, label: "other" });
    await api.revokeToken({ organizationId: org, tokenId: other.token!.id });

    const reads: unknown[] = [
      await api.getToken(org, tokenId),
      await api.listTokens({ organizationId: org }),
      await api.listTokens({ organizationId: org, serviceAccountId: sa.id, includeInactive: true }),
      await api.listAudit({ organizationId: org }),
      await api.listAudit({ organizationId: org, projectId: "proj_r" }),
      await api.listSas({ organizationId: org, includeRevoked: true }),
      await api.getSa(org, sa.id),
    ];
    const revoked = await api.revokeToken({ organizationId: org, tokenId });
    reads.push(revoked, await api.revokeSa({ organizationId: org, serviceAccountId: sa.id }), await api.listAudit({ organizationId: org }));
    for (const r of reads) {
      const text = JSON.stringify(r);
      expect(text).not.toContain(secret);
      expect(text).not.toContain(random);
      expect(text).not.toContain(other.secret.slice(8, 40));
    }
    // The reads do contain the token (so the check above is meaningful).
    expect(JSON.stringify(reads[1])).toContain(tokenId);
    expect(JSON.stringify(reads[3])).toContain(tokenId);

    const values = await everyStoredValue();
    expect(values.length).toBeGreaterThan(10);
    const hexSecret = Buffer.from(secret).toString("hex");
    for (const value of values) {
      expect(value).not.toContain(secret);
      expect(value).not.toContain(random);
      expect(value).not.toContain(hexSecret);
      expect(value).not.toContain(other.secret.slice(8, 40));
    }
    // The stored hash is there, as hex text, proving the scan saw the tokens table.
    expect(values).toContain(`\\x${sha256(secret).toString("hex")}`);

    const logs = server.logs.text;
    expect(logs).toContain("CreateToken");
    expect(logs).not.toContain(secret);
    expect(logs).not.toContain(random);
    expect(logs).not.toContain(other.secret.slice(8, 40));
    // No token-like string at all beyond the displayable 12-character prefix.
    expect(logs).not.toMatch(/pw_mgmt_[0-9A-Za-z]{5,}/);
  });
});

describe("GetToken / ListTokens", () => {
  it("GetToken of an unknown id is NOT_FOUND; fields are validated", async () => {
    await expectError(api.getToken(ORG, "tok_nothere"), Code.NOT_FOUND, "ERROR_REASON_TOKEN_NOT_FOUND");
    await expectInvalid(api.getToken(ORG, ""), "token_id");
    await expectInvalid(api.getToken("", "tok_x"), "organization_id");
  });

  it("ListTokens lists one account's or the whole organization's tokens, oldest first", async () => {
    const org = "org_list_tok";
    const a = await newSa(org);
    const b = await newSa(org);
    const a1 = (await api.createToken({ organizationId: org, serviceAccountId: a.id })).token!.id;
    const b1 = (await api.createToken({ organizationId: org, serviceAccountId: b.id })).token!.id;
    const a2 = (await api.createToken({ organizationId: org, serviceAccountId: a.id })).token!.id;
    expect((await api.listTokens({ organizationId: org, serviceAccountId: a.id })).tokens.map((t) => t.id)).toEqual([a1, a2]);
    expect((await api.listTokens({ organizationId: org, serviceAccountId: b.id })).tokens.map((t) => t.id)).toEqual([b1]);
    expect((await api.listTokens({ organizationId: org })).tokens.map((t) => t.id)).toEqual([a1, b1, a2]);
  });

  it("ListTokens validates and answers NOT_FOUND for an unknown service account", async () => {
    await expectError(api.listTokens({ organizationId: ORG, serviceAccountId: "sa_none" }), Code.NOT_FOUND, "ERROR_REASON_SERVICE_ACCOUNT_NOT_FOUND");
    await expectInvalid(api.listTokens({ organizationId: "" }), "organization_id");
    await expectInvalid(api.listTokens({ organizationId: ORG, pageSize: -5 }), "page_size");
  });
});

describe("RevokeToken", () => {
  it("revokes one token; revoking again is a no-op returning it", async () => {
    const sa = await newSa();
    const keep = (await api.createToken({ organizationId: ORG, serviceAccountId: sa.id })).token!;
    const t = (await api.createToken({ organizationId: ORG, serviceAccountId: sa.id })).token!;
    const r1 = (await api.revokeToken({ organizationId: ORG, tokenId: t.id })).token!;
    expect(r1.status).toBe(TokenStatus.TOKEN_STATUS_REVOKED);
    expect(r1.revokeTime).toBeInstanceOf(Date);
    expect((await api.getToken(ORG, t.id)).token).toEqual(r1);
    const r2 = (await api.revokeToken({ organizationId: ORG, tokenId: t.id })).token!;
    expect(r2).toEqual(r1);
    expect((await api.getSa(ORG, sa.id)).serviceAccount!.activeTokenCount).toBe(1);
    expect((await api.listTokens({ organizationId: ORG, serviceAccountId: sa.id })).tokens.map((x) => x.id)).toEqual([keep.id]);
    expect((await api.listTokens({ organizationId: ORG, serviceAccountId: sa.id, includeInactive: true })).tokens.map((x) => [x.id, x.status])).toEqual([
      [keep.id, TokenStatus.TOKEN_STATUS_ACTIVE],
      [t.id, TokenStatus.TOKEN_STATUS_REVOKED],
    ]);
    // The stored hash survives the revocation untouched.
    const [row] = await sql<{ n: number }>(db.url, `select octet_length(secret_hash) as n from tokens where id = $1`, [t.id]);
    expect(row!.n).toBe(32);
  });

  it("NOT_FOUND for an unknown token; validates its fields", async () => {
    await expectError(api.revokeToken({ organizationId: ORG, tokenId: "tok_none" }), Code.NOT_FOUND, "ERROR_REASON_TOKEN_NOT_FOUND");
    await expectInvalid(api.revokeToken({ organizationId: ORG, tokenId: "" }), "token_id");
    await expectInvalid(api.revokeToken({ organizationId: "o o", tokenId: "tok_x" }), "organization_id");
  });
});

describe("at most 50 active tokens per service account", () => {
  it("the 51st is RESOURCE_EXHAUSTED; revoking one frees a slot", async () => {
    const sa = await newSa();
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) ids.push((await api.createToken({ organizationId: ORG, serviceAccountId: sa.id, label: `t${i}` })).token!.id);
    expect((await api.getSa(ORG, sa.id)).serviceAccount!.activeTokenCount).toBe(50);
    const e = await expectError(api.createToken({ organizationId: ORG, serviceAccountId: sa.id }), Code.RESOURCE_EXHAUSTED, "ERROR_REASON_TOKEN_LIMIT_REACHED");
    expect(e.message).toMatch(/50/);
    // Another account of the same organization is not affected.
    const other = await newSa();
    await api.createToken({ organizationId: ORG, serviceAccountId: other.id });

    await api.revokeToken({ organizationId: ORG, tokenId: ids[17]! });
    await api.createToken({ organizationId: ORG, serviceAccountId: sa.id, label: "replacement" });
    await expectError(api.createToken({ organizationId: ORG, serviceAccountId: sa.id }), Code.RESOURCE_EXHAUSTED, "ERROR_REASON_TOKEN_LIMIT_REACHED");
    const [row] = await sql<{ n: string }>(db.url, `select count(*) as n from tokens where service_account_id = $1 and status = 'active'`, [sa.id]);
    expect(row!.n).toBe("50");
  });
});

describe("expiry", () => {
  it("a token past expire_time reads EXPIRED, leaves the default list and the active count, frees its slot", async () => {
    const org = "org_exp";
    const sa = await newSa(org);
    const forever = (await api.createToken({ organizationId: org, serviceAccountId: sa.id, label: "forever" })).token!;
    const expireTime = new Date(Date.now() + 1500);
    const short = (await api.createToken({ organizationId: org, serviceAccountId: sa.id, label: "short", expireTime })).token!;
    expect(short.status).toBe(TokenStatus.TOKEN_STATUS_ACTIVE);
    expect(short.expireTime).toEqual(expireTime);
    expect((await api.getToken(org, short.id)).token!.status).toBe(TokenStatus.TOKEN_STATUS_ACTIVE);
    expect((await api.getSa(org, sa.id)).serviceAccount!.activeTokenCount).toBe(2);

    await sleep(Math.max(0, expireTime.getTime() - Date.now()) + 150);

    const got = (await api.getToken(org, short.id)).token!;
    expect(got.status).toBe(TokenStatus.TOKEN_STATUS_EXPIRED);
    expect(got.revokeTime).toBeUndefined();
    expect((await api.listTokens({ organizationId: org, serviceAccountId: sa.id })).tokens.map((t) => t.id)).toEqual([forever.id]);
    expect((await api.listTokens({ organizationId: org })).tokens.map((t) => t.id)).toEqual([forever.id]);
    const all = (await api.listTokens({ organizationId: org, includeInactive: true })).tokens;
    expect(all.map((t) => [t.id, t.status])).toEqual([
      [forever.id, TokenStatus.TOKEN_STATUS_ACTIVE],
      [short.id, TokenStatus.TOKEN_STATUS_EXPIRED],
    ]);
    expect((await api.getSa(org, sa.id)).serviceAccount!.activeTokenCount).toBe(1);

    // Revocation takes precedence over expiry.
    const revoked = (await api.revokeToken({ organizationId: org, tokenId: short.id })).token!;
    expect(revoked.status).toBe(TokenStatus.TOKEN_STATUS_REVOKED);
  });

  it("expired tokens do not count towards the 50-token limit", async () => {
    const org = "org_exp_limit";
    const sa = await newSa(org);
    for (let i = 0; i < 49; i++) await api.createToken({ organizationId: org, serviceAccountId: sa.id, label: `t${i}` });
    const expireTime = new Date(Date.now() + 2000);
    await api.createToken({ organizationId: org, serviceAccountId: sa.id, label: "short", expireTime });
    await expectError(api.createToken({ organizationId: org, serviceAccountId: sa.id }), Code.RESOURCE_EXHAUSTED, "ERROR_REASON_TOKEN_LIMIT_REACHED");
    await sleep(Math.max(0, expireTime.getTime() - Date.now()) + 150);
    await api.createToken({ organizationId: org, serviceAccountId: sa.id, label: "after-expiry" });
    expect((await api.getSa(org, sa.id)).serviceAccount!.activeTokenCount).toBe(50);
  });

  it("a token of a revoked service account reads REVOKED even once past its expire_time", async () => {
    const org = "org_exp_rev";
    const sa = await newSa(org);
    const expireTime = new Date(Date.now() + 1500);
    const t = (await api.createToken({ organizationId: org, serviceAccountId: sa.id, expireTime })).token!;
    await api.revokeSa({ organizationId: org, serviceAccountId: sa.id });
    await sleep(Math.max(0, expireTime.getTime() - Date.now()) + 150);
    expect((await api.getToken(org, t.id)).token!.status).toBe(TokenStatus.TOKEN_STATUS_REVOKED);
  });

  it("revoking a service account also revokes its already-expired tokens (all its tokens), counting only active ones", async () => {
    const org = "org_exp_rev2";
    const sa = await newSa(org);
    const expireTime = new Date(Date.now() + 1500);
    const expired = (await api.createToken({ organizationId: org, serviceAccountId: sa.id, expireTime })).token!;
    const live = (await api.createToken({ organizationId: org, serviceAccountId: sa.id })).token!;
    await sleep(Math.max(0, expireTime.getTime() - Date.now()) + 150);
    expect((await api.getToken(org, expired.id)).token!.status).toBe(TokenStatus.TOKEN_STATUS_EXPIRED);
    const res = await api.revokeSa({ organizationId: org, serviceAccountId: sa.id });
    // revoked_token_count counts the tokens that were active (usable) until now.
    expect(res.revokedTokenCount).toBe(1);
    expect((await api.getToken(org, live.id)).token!.status).toBe(TokenStatus.TOKEN_STATUS_REVOKED);
    expect((await api.getToken(org, expired.id)).token!.status).toBe(TokenStatus.TOKEN_STATUS_REVOKED);
    const rows = await sql<{ n: string }>(
      db.url,
      `select count(*) as n from tokens t join service_accounts s on s.id = t.service_account_id where s.status = 'revoked' and t.status = 'active'`,
    );
    expect(rows[0]!.n).toBe("0");
  });
});

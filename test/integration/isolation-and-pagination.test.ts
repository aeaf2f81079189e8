/**
 * Cross-organization isolation (another organization's resources are NOT_FOUND exactly like
 * missing ones, lists never show them) and pagination (default 50, max 200, negative refused,
 * every item exactly once across pages, tampered or rebound page tokens refused).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ServiceAccountStatus } from "../../src/generated/pokerworks/identity/v1/service_account";
import { TokenStatus } from "../../src/generated/pokerworks/identity/v1/token";
import { sql, type TestDatabase, type TestServer, useTestServer } from "../support/harness";
import { allPages, Code, expectError, expectInvalid, issuanceApi, type IssuanceApi, type StrictError } from "../support/issuance-api";

let db: TestDatabase;
let server: TestServer;
let api: IssuanceApi;

useTestServer({}, (s, d) => {
  server = s;
  db = d;
  api = issuanceApi(s);
});

const strip = (e: StrictError) => ({ code: e.code, message: e.message, reason: e.reason, domain: e.domain, fieldViolations: e.fieldViolations });

describe("cross-organization isolation", () => {
  const A = "org_iso_a";
  const B = "org_iso_b";
  let saA: string;
  let tokA: string;
  let saB: string;
  let tokB: string;

  beforeAll(async () => {
    saA = (await api.createSa({ organizationId: A, name: "a-account" })).serviceAccount!.id;
    tokA = (await api.createToken({ organizationId: A, serviceAccountId: saA, projectIds: ["shared_project"] })).token!.id;
    saB = (await api.createSa({ organizationId: B, name: "b-account" })).serviceAccount!.id;
    tokB = (await api.createToken({ organizationId: B, serviceAccountId: saB, projectIds: ["shared_project"] })).token!.id;
  });

  it("another organization's service account is NOT_FOUND on every RPC, exactly like a missing one", async () => {
    const missing = "sa_000000000000000000000000";
    const pairs: [string, (id: string) => Promise<unknown>][] = [
      ["GetServiceAccount", (id) => api.getSa(B, id)],
      ["UpdateServiceAccount", (id) => api.updateSa({ organizationId: B, serviceAccountId: id, name: "hijacked" })],
      ["RevokeServiceAccount", (id) => api.revokeSa({ organizationId: B, serviceAccountId: id })],
      ["CreateToken", (id) => api.createToken({ organizationId: B, serviceAccountId: id })],
      ["ListTokens", (id) => api.listTokens({ organizationId: B, serviceAccountId: id })],
    ];
    for (const [method, run] of pairs) {
      const foreign = await expectError(run(saA), Code.NOT_FOUND, "ERROR_REASON_SERVICE_ACCOUNT_NOT_FOUND");
      const absent = await expectError(run(missing), Code.NOT_FOUND, "ERROR_REASON_SERVICE_ACCOUNT_NOT_FOUND");
      expect(strip(foreign), method).toEqual(strip(absent));
      expect(foreign.message).not.toContain(A);
    }
  });

  it("another organization's token is NOT_FOUND on Get and Revoke, exactly like a missing one", async () => {
    const missing = "tok_000000000000000000000000";
    for (const run of [(id: string) => api.getToken(B, id), (id: string) => api.revokeToken({ organizationId: B, tokenId: id })]) {
      const foreign = await expectError(run(tokA), Code.NOT_FOUND, "ERROR_REASON_TOKEN_NOT_FOUND");
      const absent = await expectError(run(missing), Code.NOT_FOUND, "ERROR_REASON_TOKEN_NOT_FOUND");
      expect(strip(foreign)).toEqual(strip(absent));
    }
  });

  it("nothing of A changed after B's attempts, and no event was written for them", async () => {
    const sa = (await api.getSa(A, saA)).serviceAccount!;
    expect(sa).toMatchObject({ name: "a-account", status: ServiceAccountStatus.SERVICE_ACCOUNT_STATUS_ACTIVE, activeTokenCount: 1 });
    expect((await api.getToken(A, tokA)).token!.status).toBe(TokenStatus.TOKEN_STATUS_ACTIVE);
    const rows = await sql<{ organization_id: string; action: string }>(db.url, `select organization_id, action from audit_events order by seq`);
    expect(rows).toEqual([
      { organization_id: A, action: "service_account.created" },
      { organization_id: A, action: "token.created" },
      { organization_id: B, action: "service_account.created" },
      { organization_id: B, action: "token.created" },
    ]);
  });

  it("lists never show another organization's items", async () => {
    const sas = await api.listSas({ organizationId: B, includeRevoked: true });
    expect(sas.serviceAccounts.map((s) => s.id)).toEqual([saB]);
    const toks = await api.listTokens({ organizationId: B, includeInactive: true });
    expect(toks.tokens.map((t) => t.id)).toEqual([tokB]);
    const events = await api.listAudit({ organizationId: B });
    expect(events.events.every((e) => e.organizationId === B)).toBe(true);
    expect(events.events.map((e) => e.targetId).sort()).toEqual([saB, tokB].sort());
    const byProject = await api.listAudit({ organizationId: B, projectId: "shared_project" });
    expect(byProject.events.map((e) => e.targetId)).toEqual([tokB]);
    // An organization id that is a prefix of another one sees nothing of it.
    expect((await api.listSas({ organizationId: "org_iso" })).serviceAccounts).toEqual([]);
    expect((await api.listTokens({ organizationId: "org_iso" })).tokens).toEqual([]);
  });

  it("a token can't be listed under another organization's service account via A's own id", async () => {
    await expectError(api.listTokens({ organizationId: A, serviceAccountId: saB }), Code.NOT_FOUND, "ERROR_REASON_SERVICE_ACCOUNT_NOT_FOUND");
    expect((await api.listTokens({ organizationId: A, serviceAccountId: saA })).tokens.map((t) => t.id)).toEqual([tokA]);
  });
});

describe("pagination of service accounts", () => {
  const ORG = "org_pages";
  const ids: string[] = [];

  beforeAll(async () => {
    for (let i = 0; i < 205; i++) ids.push((await api.createSa({ organizationId: ORG, name: `acct-${String(i).padStart(3, "0")}` })).serviceAccount!.id);
    // Noise in another organization.
    for (let i = 0; i < 3; i++) await api.createSa({ organizationId: "org_pages_noise", name: `noise-${i}` });
  }, 120_000);

  it("page size 0 means 50", async () => {
    const r = await api.listSas({ organizationId: ORG });
    expect(r.serviceAccounts.map((s) => s.id)).toEqual(ids.slice(0, 50));
    expect(r.nextPageToken).not.toBe("");
  });

  it("page size is capped at 200", async () => {
    const r = await api.listSas({ organizationId: ORG, pageSize: 1000 });
    expect(r.serviceAccounts).toHaveLength(200);
    const rest = await api.listSas({ organizationId: ORG, pageSize: 1000, pageToken: r.nextPageToken });
    expect(rest.serviceAccounts.map((s) => s.id)).toEqual(ids.slice(200));
    expect(rest.nextPageToken).toBe("");
    const exact = await api.listSas({ organizationId: ORG, pageSize: 200 });
    expect(exact.serviceAccounts).toHaveLength(200);
  });

  it("a negative page size is INVALID_ARGUMENT", async () => {
    await expectInvalid(api.listSas({ organizationId: ORG, pageSize: -1 }), "page_size");
    await expectInvalid(api.listAudit({ organizationId: ORG, pageSize: -1 }), "page_size");
  });

  it("audit events page the same way: default 50, at most 200, every event once", async () => {
    const events = await sql<{ id: string }>(db.url, `select id from audit_events where organization_id = $1 order by seq desc`, [ORG]);
    expect(events.length).toBe(205);
    expect((await api.listAudit({ organizationId: ORG })).events.map((e) => e.id)).toEqual(events.slice(0, 50).map((e) => e.id));
    const big = await api.listAudit({ organizationId: ORG, pageSize: 5000 });
    expect(big.events.map((e) => e.id)).toEqual(events.slice(0, 200).map((e) => e.id));
    const rest = await api.listAudit({ organizationId: ORG, pageSize: 5000, pageToken: big.nextPageToken });
    expect(rest.events.map((e) => e.id)).toEqual(events.slice(200).map((e) => e.id));
    expect(rest.nextPageToken).toBe("");
  });

  it.each([[0], [1], [7], [50], [204], [205], [206]])("page size %i returns every item exactly once, oldest first", async (pageSize) => {
    const effective = pageSize === 0 ? 50 : Math.min(pageSize, 200);
    const { items, pages } = await allPages(async (pageToken) => {
      const r = await api.listSas({ organizationId: ORG, pageSize, pageToken });
      return { items: r.serviceAccounts.map((s) => s.id), next: r.nextPageToken };
    }, effective);
    expect(items).toEqual(ids);
    expect(pages).toBe(Math.ceil(ids.length / effective));
  }, 60_000);

  it("include_revoked pages include revoked accounts; the default skips them", async () => {
    const org = "org_pages_rev";
    const all: string[] = [];
    for (let i = 0; i < 9; i++) all.push((await api.createSa({ organizationId: org, name: `r-${i}` })).serviceAccount!.id);
    for (const i of [0, 4, 8]) await api.revokeSa({ organizationId: org, serviceAccountId: all[i]! });
    const active = await allPages(async (pageToken) => {
      const r = await api.listSas({ organizationId: org, pageSize: 2, pageToken });
      return { items: r.serviceAccounts.map((s) => s.id), next: r.nextPageToken };
    }, 2);
    expect(active.items).toEqual(all.filter((_, i) => ![0, 4, 8].includes(i)));
    const everything = await allPages(async (pageToken) => {
      const r = await api.listSas({ organizationId: org, pageSize: 2, pageToken, includeRevoked: true });
      return { items: r.serviceAccounts.map((s) => s.id), next: r.nextPageToken };
    }, 2);
    expect(everything.items).toEqual(all);
  });

  it("items created while paging appear once, at the end", async () => {
    const org = "org_pages_live";
    const first: string[] = [];
    for (let i = 0; i < 4; i++) first.push((await api.createSa({ organizationId: org, name: `l-${i}` })).serviceAccount!.id);
    const p1 = await api.listSas({ organizationId: org, pageSize: 3 });
    const added = (await api.createSa({ organizationId: org, name: "late" })).serviceAccount!.id;
    const p2 = await api.listSas({ organizationId: org, pageSize: 3, pageToken: p1.nextPageToken });
    expect([...p1.serviceAccounts, ...p2.serviceAccounts].map((s) => s.id)).toEqual([...first, added]);
    expect(p2.nextPageToken).toBe("");
  });

  it("refuses a tampered page token, and one reused with another organization or other filters", async () => {
    const { nextPageToken: t } = await api.listSas({ organizationId: ORG, pageSize: 5 });
    expect(t).not.toBe("");
    const reason = "ERROR_REASON_INVALID_PAGE_TOKEN";
    await expectInvalid(api.listSas({ organizationId: "org_pages_noise", pageSize: 5, pageToken: t }), "page_token", reason);
    await expectInvalid(api.listSas({ organizationId: ORG, pageSize: 5, pageToken: t, includeRevoked: true }), "page_token", reason);
    await expectInvalid(api.listTokens({ organizationId: ORG, pageToken: t }), "page_token", reason);
    await expectInvalid(api.listAudit({ organizationId: ORG, pageToken: t }), "page_token", reason);
    for (let i = 0; i < t.length; i++) {
      const altered = t.slice(0, i) + (t[i] === "x" ? "y" : "x") + t.slice(i + 1);
      if (Buffer.from(altered, "base64url").equals(Buffer.from(t, "base64url"))) continue;
      await expectInvalid(api.listSas({ organizationId: ORG, pageSize: 5, pageToken: altered }), "page_token", reason);
    }
    for (const garbage of ["x", "%%%", "not a page token", t + "AA", t.slice(0, -3), "A".repeat(1000)])
      await expectInvalid(api.listSas({ organizationId: ORG, pageSize: 5, pageToken: garbage }), "page_token", reason);
    // The untouched token still works.
    expect((await api.listSas({ organizationId: ORG, pageSize: 5, pageToken: t })).serviceAccounts.map((s) => s.id)).toEqual(ids.slice(5, 10));
  });
});

describe("pagination of tokens", () => {
  const ORG = "org_tok_pages";
  let saX: string;
  let saY: string;
  const xTokens: string[] = [];
  const allTokens: string[] = [];
  const revoked = new Set<string>();

  beforeAll(async () => {
    saX = (await api.createSa({ organizationId: ORG, name: "x" })).serviceAccount!.id;
    saY = (await api.createSa({ organizationId: ORG, name: "y" })).serviceAccount!.id;
    for (let i = 0; i < 46; i++) {
      const sa = i % 3 === 0 ? saY : saX;
      const id = (await api.createToken({ organizationId: ORG, serviceAccountId: sa, label: `t${i}` })).token!.id;
      allTokens.push(id);
      if (sa === saX) xTokens.push(id);
    }
    for (const i of [1, 2, 10, 45]) {
      await api.revokeToken({ organizationId: ORG, tokenId: allTokens[i]! });
      revoked.add(allTokens[i]!);
    }
  }, 60_000);

  const pagesOf = (req: { serviceAccountId?: string; includeInactive?: boolean }, pageSize: number) =>
    allPages(async (pageToken) => {
      const r = await api.listTokens({ organizationId: ORG, pageSize, pageToken, ...req });
      return { items: r.tokens.map((t) => t.id), next: r.nextPageToken };
    }, pageSize);

  it("org-wide and per account, with and without inactive tokens, every token exactly once", async () => {
    for (const pageSize of [1, 4, 13, 200]) {
      expect((await pagesOf({ includeInactive: true }, pageSize)).items).toEqual(allTokens);
      expect((await pagesOf({}, pageSize)).items).toEqual(allTokens.filter((id) => !revoked.has(id)));
      expect((await pagesOf({ serviceAccountId: saX, includeInactive: true }, pageSize)).items).toEqual(xTokens);
      expect((await pagesOf({ serviceAccountId: saX }, pageSize)).items).toEqual(xTokens.filter((id) => !revoked.has(id)));
    }
  });

  it("page size 0 means 50, and a negative one is refused", async () => {
    const r = await api.listTokens({ organizationId: ORG, includeInactive: true });
    expect(r.tokens).toHaveLength(46);
    expect(r.nextPageToken).toBe("");
    await expectInvalid(api.listTokens({ organizationId: ORG, pageSize: -1 }), "page_size");
  });

  it("refuses a page token reused with another organization, account or include_inactive", async () => {
    const { nextPageToken: t } = await api.listTokens({ organizationId: ORG, pageSize: 3 });
    expect(t).not.toBe("");
    const reason = "ERROR_REASON_INVALID_PAGE_TOKEN";
    await expectInvalid(api.listTokens({ organizationId: "org_iso_a", pageSize: 3, pageToken: t }), "page_token", reason);
    await expectInvalid(api.listTokens({ organizationId: ORG, pageSize: 3, pageToken: t, includeInactive: true }), "page_token", reason);
    await expectInvalid(api.listTokens({ organizationId: ORG, serviceAccountId: saX, pageSize: 3, pageToken: t }), "page_token", reason);
    await expectInvalid(api.listSas({ organizationId: ORG, pageToken: t }), "page_token", reason);
    const bad = t.slice(0, -1) + (t.endsWith("A") ? "B" : "A");
    await expectInvalid(api.listTokens({ organizationId: ORG, pageSize: 3, pageToken: bad }), "page_token", reason);
  });
});

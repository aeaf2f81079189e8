/**
 * ServiceAccountService through a real grpc-js client against a real server on PostgreSQL:
 * create/get/list/update/revoke, every validation rule, actor rules, ALREADY_EXISTS,
 * update masks, revocation semantics.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ServiceAccountStatus } from "../../src/generated/pokerworks/identity/v1/service_account";
import { TokenStatus } from "../../src/generated/pokerworks/identity/v1/token";
import { sql, type TestDatabase, type TestServer, tokenActor, userActor, useTestServer } from "../support/harness";
import { Code, expectError, expectInvalid, issuanceApi, type IssuanceApi } from "../support/issuance-api";

let db: TestDatabase;
let server: TestServer;
let api: IssuanceApi;

useTestServer({}, (s, d) => {
  server = s;
  db = d;
  api = issuanceApi(s);
});

let counter = 0;
const uniqueName = (base = "sa") => `${base}-${++counter}`;

async function newSa(org = "org_sa", name = uniqueName()) {
  return (await api.createSa({ organizationId: org, name })).serviceAccount!;
}

async function counts() {
  const [row] = await sql<{ sa: string; tok: string; evt: string }>(
    db.url,
    `select (select count(*) from service_accounts) as sa, (select count(*) from tokens) as tok, (select count(*) from audit_events) as evt`,
  );
  return row!;
}

describe("CreateServiceAccount / GetServiceAccount", () => {
  it("creates an active service account and reads it back", async () => {
    const before = Date.now();
    const res = await api.createSa({ organizationId: "org_sa", name: "  ci pipeline  ", description: "  builds  ", actor: userActor("user_bob") });
    const sa = res.serviceAccount!;
    expect(sa.id).toMatch(/^sa_[0-9A-Za-z]{24}$/);
    expect(sa.organizationId).toBe("org_sa");
    expect(sa.name).toBe("ci pipeline");
    expect(sa.description).toBe("builds");
    expect(sa.status).toBe(ServiceAccountStatus.SERVICE_ACCOUNT_STATUS_ACTIVE);
    expect(sa.activeTokenCount).toBe(0);
    expect(sa.createdBy).toEqual(userActor("user_bob"));
    expect(sa.createTime!.getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(sa.createTime!.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
    expect(sa.updateTime).toEqual(sa.createTime);
    expect(sa.revokeTime).toBeUndefined();

    const got = (await api.getSa("org_sa", sa.id)).serviceAccount!;
    expect(got).toEqual(sa);

    const [row] = await sql(db.url, `select organization_id, name, description, status, created_by_kind, created_by_id from service_accounts where id = $1`, [sa.id]);
    expect(row).toEqual({
      organization_id: "org_sa",
      name: "ci pipeline",
      description: "builds",
      status: "active",
      created_by_kind: "user",
      created_by_id: "user_bob",
    });
  });

  it("accepts an empty description and names of 1 and 100 characters", async () => {
    expect((await api.createSa({ organizationId: "org_sa", name: "x" })).serviceAccount!.description).toBe("");
    const long = "n".repeat(100);
    expect((await api.createSa({ organizationId: "org_sa", name: long, description: "d".repeat(500) })).serviceAccount!.name).toBe(long);
  });

  it("GetServiceAccount of an unknown id is NOT_FOUND", async () => {
    await expectError(api.getSa("org_sa", "sa_doesnotexist000000000000"), Code.NOT_FOUND, "ERROR_REASON_SERVICE_ACCOUNT_NOT_FOUND");
  });

  it("GetServiceAccount validates its fields", async () => {
    await expectInvalid(api.getSa("", "sa_x"), "organization_id");
    await expectInvalid(api.getSa("org_sa", ""), "service_account_id");
    await expectInvalid(api.getSa("org_sa", "x".repeat(129)), "service_account_id");
  });
});

describe("CreateServiceAccount validation", () => {
  it.each([[""], ["-org"], ["_org"], ["org 1"], ["org/1"], ["org.1"], ["o".repeat(65)], ["örg"]])("refuses organization_id %j", async (org) => {
    await expectInvalid(api.createSa({ organizationId: org, name: "valid" }), "organization_id");
  });

  it.each([
    ["empty", ""],
    ["blank", "    "],
    ["101 characters", "n".repeat(101)],
    ["a control character", "bad\u0000name"],
  ])("refuses a name that is %s", async (_what, name) => {
    await expectInvalid(api.createSa({ organizationId: "org_sa", name }), "name");
  });

  it("refuses a description over 500 characters", async () => {
    await expectInvalid(api.createSa({ organizationId: "org_sa", name: uniqueName(), description: "d".repeat(501) }), "description");
  });

  it("refuses a missing actor, naming actor", async () => {
    const e = await expectInvalid(api.createSa({ organizationId: "org_sa", name: uniqueName(), actor: undefined }), "actor");
    expect(e.message).toMatch(/actor/);
  });

  it("refuses an Actor message with neither user_id nor management_token, naming actor", async () => {
    await expectInvalid(api.createSa({ organizationId: "org_sa", name: uniqueName(), actor: { kind: undefined } }), "actor");
  });

  it("refuses control characters in a description other than newlines and tabs", async () => {
    await expectInvalid(api.createSa({ organizationId: "org_sa", name: uniqueName(), description: "bell\u0007" }), "description");
    const ok = (await api.createSa({ organizationId: "org_sa", name: uniqueName(), description: "line 1\nline 2\tend" })).serviceAccount!;
    expect(ok.description).toBe("line 1\nline 2\tend");
  });

  it("refuses an empty user id", async () => {
    await expectInvalid(api.createSa({ organizationId: "org_sa", name: uniqueName(), actor: userActor("") }), "actor.user_id");
  });

  it("reports every bad field at once", async () => {
    const e = await expectInvalid(api.createSa({ organizationId: "-", name: "", description: "d".repeat(501), actor: undefined }), "actor");
    expect(e.fieldViolations.map((v) => v.field).sort()).toEqual(["actor", "description", "name", "organization_id"]);
  });

  it("writes nothing when it refuses", async () => {
    const before = await counts();
    await expectInvalid(api.createSa({ organizationId: "org_sa", name: "" }), "name");
    await expectError(api.createSa({ organizationId: "org_sa", name: uniqueName(), actor: tokenActor() }), Code.PERMISSION_DENIED, "ERROR_REASON_MANAGEMENT_TOKEN_NOT_ALLOWED");
    expect(await counts()).toEqual(before);
  });
});

describe("names are unique among an organization's active service accounts", () => {
  it("ALREADY_EXISTS for a duplicate active name (also after trimming)", async () => {
    await newSa("org_dup", "deployer");
    const e = await expectError(api.createSa({ organizationId: "org_dup", name: "deployer" }), Code.ALREADY_EXISTS, "ERROR_REASON_SERVICE_ACCOUNT_NAME_TAKEN");
    expect(e.message).toContain("deployer");
    await expectError(api.createSa({ organizationId: "org_dup", name: "  deployer " }), Code.ALREADY_EXISTS, "ERROR_REASON_SERVICE_ACCOUNT_NAME_TAKEN");
  });

  it("allows the same name in another organization", async () => {
    await newSa("org_dup_a", "shared-name");
    const other = await newSa("org_dup_b", "shared-name");
    expect(other.name).toBe("shared-name");
  });

  it("allows the name again once the first one is revoked", async () => {
    const first = await newSa("org_dup_c", "recycled");
    await api.revokeSa({ organizationId: "org_dup_c", serviceAccountId: first.id });
    const second = await newSa("org_dup_c", "recycled");
    expect(second.id).not.toBe(first.id);
    // ...and only one of them is active.
    await expectError(api.createSa({ organizationId: "org_dup_c", name: "recycled" }), Code.ALREADY_EXISTS, "ERROR_REASON_SERVICE_ACCOUNT_NAME_TAKEN");
  });
});

describe("UpdateServiceAccount", () => {
  it("update_mask name changes only the name", async () => {
    const sa = (await api.createSa({ organizationId: "org_up", name: uniqueName(), description: "keep me" })).serviceAccount!;
    const res = await api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, name: " renamed-1 ", description: "ignored", updateMask: ["name"] });
    const up = res.serviceAccount!;
    expect(up.name).toBe("renamed-1");
    expect(up.description).toBe("keep me");
    expect(up.updateTime!.getTime()).toBeGreaterThanOrEqual(sa.updateTime!.getTime());
    expect(up.createTime).toEqual(sa.createTime);
    expect((await api.getSa("org_up", sa.id)).serviceAccount).toEqual(up);
  });

  it("update_mask description changes only the description (and may clear it)", async () => {
    const sa = (await api.createSa({ organizationId: "org_up", name: "desc-target", description: "old" })).serviceAccount!;
    const up = (await api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, name: "ignored", description: "new text", updateMask: ["description"] })).serviceAccount!;
    expect(up.name).toBe("desc-target");
    expect(up.description).toBe("new text");
    const cleared = (await api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, description: "", updateMask: ["description"] })).serviceAccount!;
    expect(cleared.description).toBe("");
  });

  it("update_mask * replaces both", async () => {
    const sa = (await api.createSa({ organizationId: "org_up", name: uniqueName(), description: "old" })).serviceAccount!;
    const up = (await api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, name: "star-name", description: "", updateMask: ["*"] })).serviceAccount!;
    expect(up.name).toBe("star-name");
    expect(up.description).toBe("");
  });

  it("an empty mask updates the non-empty fields", async () => {
    const sa = (await api.createSa({ organizationId: "org_up", name: "empty-mask", description: "old" })).serviceAccount!;
    const a = (await api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, description: "new", updateMask: [] })).serviceAccount!;
    expect(a).toMatchObject({ name: "empty-mask", description: "new" });
    const b = (await api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, name: "empty-mask-2" })).serviceAccount!;
    expect(b).toMatchObject({ name: "empty-mask-2", description: "new" });
    await expectInvalid(api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, updateMask: [] }), "update_mask");
  });

  it("refuses an unknown update_mask path", async () => {
    const sa = await newSa("org_up");
    await expectInvalid(api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, name: "x", updateMask: ["status"] }), "update_mask");
    await expectInvalid(api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, name: "x", updateMask: ["name", "organization_id"] }), "update_mask");
    expect((await api.getSa("org_up", sa.id)).serviceAccount!.name).toBe(sa.name);
  });

  it("validates the new values like creation does", async () => {
    const sa = await newSa("org_up");
    await expectInvalid(api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, name: "  ", updateMask: ["name"] }), "name");
    await expectInvalid(api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, name: "n".repeat(101), updateMask: ["name"] }), "name");
    await expectInvalid(api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, description: "d".repeat(501), updateMask: ["description"] }), "description");
    await expectInvalid(api.updateSa({ organizationId: "org up", serviceAccountId: sa.id, name: "x" }), "organization_id");
    await expectInvalid(api.updateSa({ organizationId: "org_up", serviceAccountId: "", name: "x" }), "service_account_id");
  });

  it("ALREADY_EXISTS when renaming onto another active name; renaming to its own name is fine", async () => {
    await newSa("org_up", "taken-name");
    const sa = await newSa("org_up", "free-name");
    await expectError(
      api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, name: "taken-name", updateMask: ["name"] }),
      Code.ALREADY_EXISTS,
      "ERROR_REASON_SERVICE_ACCOUNT_NAME_TAKEN",
    );
    expect((await api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, name: "free-name", updateMask: ["name"] })).serviceAccount!.name).toBe("free-name");
  });

  it("may take the name of a revoked service account", async () => {
    const old = await newSa("org_up", "retired-name");
    await api.revokeSa({ organizationId: "org_up", serviceAccountId: old.id });
    const sa = await newSa("org_up");
    expect((await api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, name: "retired-name" })).serviceAccount!.name).toBe("retired-name");
  });

  it("NOT_FOUND for an unknown service account", async () => {
    await expectError(api.updateSa({ organizationId: "org_up", serviceAccountId: "sa_missing", name: "x" }), Code.NOT_FOUND, "ERROR_REASON_SERVICE_ACCOUNT_NOT_FOUND");
  });

  it("FAILED_PRECONDITION on a revoked service account", async () => {
    const sa = await newSa("org_up");
    await api.revokeSa({ organizationId: "org_up", serviceAccountId: sa.id });
    await expectError(
      api.updateSa({ organizationId: "org_up", serviceAccountId: sa.id, name: "after-revoke" }),
      Code.FAILED_PRECONDITION,
      "ERROR_REASON_SERVICE_ACCOUNT_REVOKED",
    );
    expect((await api.getSa("org_up", sa.id)).serviceAccount!.name).toBe(sa.name);
  });
});

describe("RevokeServiceAccount", () => {
  it("revokes the account and all its active tokens at once", async () => {
    const org = "org_rev";
    const sa = await newSa(org);
    const other = await newSa(org);
    const t1 = (await api.createToken({ organizationId: org, serviceAccountId: sa.id })).token!;
    const t2 = (await api.createToken({ organizationId: org, serviceAccountId: sa.id })).token!;
    const t3 = (await api.createToken({ organizationId: org, serviceAccountId: sa.id })).token!;
    const otherTok = (await api.createToken({ organizationId: org, serviceAccountId: other.id })).token!;
    await api.revokeToken({ organizationId: org, tokenId: t3.id });
    expect((await api.getSa(org, sa.id)).serviceAccount!.activeTokenCount).toBe(2);

    const res = await api.revokeSa({ organizationId: org, serviceAccountId: sa.id });
    expect(res.revokedTokenCount).toBe(2);
    const revoked = res.serviceAccount!;
    expect(revoked.status).toBe(ServiceAccountStatus.SERVICE_ACCOUNT_STATUS_REVOKED);
    expect(revoked.activeTokenCount).toBe(0);
    expect(revoked.revokeTime).toBeInstanceOf(Date);
    expect(revoked.updateTime).toEqual(revoked.revokeTime);

    for (const t of [t1, t2]) {
      const got = (await api.getToken(org, t.id)).token!;
      expect(got.status).toBe(TokenStatus.TOKEN_STATUS_REVOKED);
      expect(got.revokeTime).toEqual(revoked.revokeTime);
    }
    // The token revoked earlier keeps its own revoke time.
    expect((await api.getToken(org, t3.id)).token!.revokeTime!.getTime()).toBeLessThan(revoked.revokeTime!.getTime());
    expect((await api.getSa(org, sa.id)).serviceAccount).toEqual(revoked);
    // Other accounts are untouched.
    expect((await api.getToken(org, otherTok.id)).token!.status).toBe(TokenStatus.TOKEN_STATUS_ACTIVE);
    expect((await api.getSa(org, other.id)).serviceAccount!.activeTokenCount).toBe(1);

    const [row] = await sql<{ n: string }>(db.url, `select count(*) as n from tokens where service_account_id = $1 and status = 'active'`, [sa.id]);
    expect(row!.n).toBe("0");
  });

  it("revoking twice is a no-op returning the revoked resource with count 0", async () => {
    const org = "org_rev";
    const sa = await newSa(org);
    await api.createToken({ organizationId: org, serviceAccountId: sa.id });
    const first = await api.revokeSa({ organizationId: org, serviceAccountId: sa.id });
    expect(first.revokedTokenCount).toBe(1);
    const [{ n: eventsBefore }] = (await sql<{ n: string }>(db.url, `select count(*) as n from audit_events where target_id = $1`, [sa.id])) as [{ n: string }];
    const second = await api.revokeSa({ organizationId: org, serviceAccountId: sa.id, actor: userActor("user_other") });
    expect(second.revokedTokenCount).toBe(0);
    expect(second.serviceAccount).toEqual(first.serviceAccount);
    const [{ n: eventsAfter }] = (await sql<{ n: string }>(db.url, `select count(*) as n from audit_events where target_id = $1`, [sa.id])) as [{ n: string }];
    expect(eventsAfter).toBe(eventsBefore);
  });

  it("a revoked account gets no new tokens (FAILED_PRECONDITION)", async () => {
    const org = "org_rev";
    const sa = await newSa(org);
    await api.revokeSa({ organizationId: org, serviceAccountId: sa.id });
    const before = await counts();
    await expectError(api.createToken({ organizationId: org, serviceAccountId: sa.id }), Code.FAILED_PRECONDITION, "ERROR_REASON_SERVICE_ACCOUNT_REVOKED");
    expect(await counts()).toEqual(before);
  });

  it("NOT_FOUND for an unknown service account", async () => {
    await expectError(api.revokeSa({ organizationId: "org_rev", serviceAccountId: "sa_nope" }), Code.NOT_FOUND, "ERROR_REASON_SERVICE_ACCOUNT_NOT_FOUND");
  });

  it("ListServiceAccounts hides revoked accounts unless include_revoked", async () => {
    const org = "org_rev_list";
    const a = await newSa(org);
    const b = await newSa(org);
    await api.revokeSa({ organizationId: org, serviceAccountId: a.id });
    const active = (await api.listSas({ organizationId: org })).serviceAccounts.map((x) => x.id);
    expect(active).toEqual([b.id]);
    const all = (await api.listSas({ organizationId: org, includeRevoked: true })).serviceAccounts;
    expect(all.map((x) => x.id)).toEqual([a.id, b.id]);
    expect(all[0]!.status).toBe(ServiceAccountStatus.SERVICE_ACCOUNT_STATUS_REVOKED);
  });
});

describe("ListServiceAccounts", () => {
  it("lists oldest first with live active token counts", async () => {
    const org = "org_list_counts";
    const a = await newSa(org);
    const b = await newSa(org);
    await api.createToken({ organizationId: org, serviceAccountId: b.id });
    await api.createToken({ organizationId: org, serviceAccountId: b.id });
    const list = (await api.listSas({ organizationId: org })).serviceAccounts;
    expect(list.map((x) => [x.id, x.activeTokenCount])).toEqual([
      [a.id, 0],
      [b.id, 2],
    ]);
  });

  it("validates organization_id and page_size", async () => {
    await expectInvalid(api.listSas({ organizationId: "" }), "organization_id");
    await expectInvalid(api.listSas({ organizationId: "org_x", pageSize: -1 }), "page_size");
  });

  it("an organization with nothing lists nothing", async () => {
    expect(await api.listSas({ organizationId: "org_empty" })).toEqual({ serviceAccounts: [], nextPageToken: "" });
  });
});

describe("actor rules on every mutation", () => {
  const org = "org_actor";
  let saId: string;
  let tokenId: string;
  beforeAll(async () => {
    saId = (await newSa(org)).id;
    tokenId = (await api.createToken({ organizationId: org, serviceAccountId: saId })).token!.id;
  });

  const mutations = (actor: ReturnType<typeof userActor> | ReturnType<typeof tokenActor> | undefined) =>
    [
      ["CreateServiceAccount", () => api.createSa({ organizationId: org, name: uniqueName(), actor })],
      ["UpdateServiceAccount", () => api.updateSa({ organizationId: org, serviceAccountId: saId, name: uniqueName(), actor })],
      ["RevokeServiceAccount", () => api.revokeSa({ organizationId: org, serviceAccountId: saId, actor })],
      ["CreateToken", () => api.createToken({ organizationId: org, serviceAccountId: saId, actor })],
      ["RevokeToken", () => api.revokeToken({ organizationId: org, tokenId, actor })],
    ] as const;

  it("a management token actor gets PERMISSION_DENIED on every mutation, and nothing changes", async () => {
    const before = await counts();
    for (const [name, run] of mutations(tokenActor("tok_someone"))) {
      const e = await expectError(run(), Code.PERMISSION_DENIED, "ERROR_REASON_MANAGEMENT_TOKEN_NOT_ALLOWED");
      expect(e.fieldViolations, name).toEqual([]);
    }
    expect(await counts()).toEqual(before);
    expect((await api.getSa(org, saId)).serviceAccount!.status).toBe(ServiceAccountStatus.SERVICE_ACCOUNT_STATUS_ACTIVE);
    expect((await api.getToken(org, tokenId)).token!.status).toBe(TokenStatus.TOKEN_STATUS_ACTIVE);
  });

  it("PERMISSION_DENIED wins even when other fields are invalid", async () => {
    await expectError(
      api.createToken({ organizationId: "-bad", serviceAccountId: "", label: "", scopes: [], actor: tokenActor() }),
      Code.PERMISSION_DENIED,
      "ERROR_REASON_MANAGEMENT_TOKEN_NOT_ALLOWED",
    );
  });

  it("a missing actor is INVALID_ARGUMENT naming actor on every mutation, and nothing changes", async () => {
    const before = await counts();
    for (const [name, run] of mutations(undefined)) {
      const e = await expectInvalid(run(), "actor");
      expect(e.fieldViolations.map((v) => v.field), name).toEqual(["actor"]);
    }
    expect(await counts()).toEqual(before);
  });

  it("the user actor is recorded as created_by", async () => {
    const sa = (await api.createSa({ organizationId: org, name: uniqueName(), actor: userActor("user_carol") })).serviceAccount!;
    expect(sa.createdBy).toEqual(userActor("user_carol"));
    const tok = (await api.createToken({ organizationId: org, serviceAccountId: sa.id, actor: userActor("user_dave") })).token!;
    expect(tok.createdBy).toEqual(userActor("user_dave"));
    expect((await api.getToken(org, tok.id)).token!.createdBy).toEqual(userActor("user_dave"));
  });
});

/**
 * The audit trail through a real grpc-js client against a real server on PostgreSQL: every
 * mutation writes exactly one event with the right action, actor, target and project_ids, in
 * the same transaction as the mutation; ListAuditEvents is newest first and filters by project.
 */
import { beforeAll, describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/generated/pokerworks/identity/v1/audit_event";
import { sql, type TestDatabase, type TestServer, userActor, useTestServer } from "../support/harness";
import { allPages, Code, expectError, expectInvalid, issuanceApi, type IssuanceApi } from "../support/issuance-api";

let db: TestDatabase;
let server: TestServer;
let api: IssuanceApi;

useTestServer({}, (s, d) => {
  server = s;
  db = d;
  api = issuanceApi(s);
});

let n = 0;
const name = () => `sa-${++n}`;

async function eventsOf(org: string, targetId: string): Promise<AuditEvent[]> {
  const all = await allPages(async (pageToken) => {
    const r = await api.listAudit({ organizationId: org, pageSize: 200, pageToken });
    return { items: r.events, next: r.nextPageToken };
  }, 200);
  return all.items.filter((e) => e.targetId === targetId);
}

async function rowCounts() {
  const [row] = await sql<{ sa: string; tok: string; evt: string; active_tok: string; revoked_sa: string; names: string }>(
    db.url,
    `select (select count(*) from service_accounts) as sa, (select count(*) from tokens) as tok, (select count(*) from audit_events) as evt,
            (select count(*) from tokens where status = 'active') as active_tok,
            (select count(*) from service_accounts where status = 'revoked') as revoked_sa,
            (select string_agg(name || '/' || description, ',' order by id) from service_accounts) as names`,
  );
  return row!;
}

describe("every mutation writes exactly one audit event", () => {
  it("service_account.created", async () => {
    const org = "org_audit_1";
    const sa = (await api.createSa({ organizationId: org, name: "  builder ", description: "ci", actor: userActor("user_a") })).serviceAccount!;
    const events = await eventsOf(org, sa.id);
    expect(events).toHaveLength(1);
    const e = events[0]!;
    expect(e.id).toMatch(/^evt_[0-9A-Za-z]{24}$/);
    expect(e).toMatchObject({
      organizationId: org,
      projectIds: [],
      action: "service_account.created",
      actor: userActor("user_a"),
      targetType: "service_account",
      targetId: sa.id,
    });
    expect(e.occurTime).toEqual(sa.createTime);
    expect(e.details).toEqual({ name: "builder", description: "ci" });
  });

  it("service_account.updated when something changed, nothing when nothing changed", async () => {
    const org = "org_audit_2";
    const sa = (await api.createSa({ organizationId: org, name: "before", description: "d" })).serviceAccount!;
    const up = (await api.updateSa({ organizationId: org, serviceAccountId: sa.id, name: "after", updateMask: ["name"], actor: userActor("user_b") })).serviceAccount!;
    let events = await eventsOf(org, sa.id);
    expect(events.map((e) => e.action)).toEqual(["service_account.updated", "service_account.created"]);
    expect(events[0]).toMatchObject({ actor: userActor("user_b"), targetType: "service_account", targetId: sa.id, projectIds: [] });
    expect(events[0]!.occurTime).toEqual(up.updateTime);
    expect(events[0]!.details).toEqual({ changes: { name: { from: "before", to: "after" } } });

    // Same values again: no change, no event, update_time unchanged.
    const same = (await api.updateSa({ organizationId: org, serviceAccountId: sa.id, name: "after", description: "d", updateMask: ["*"] })).serviceAccount!;
    expect(same.updateTime).toEqual(up.updateTime);
    events = await eventsOf(org, sa.id);
    expect(events).toHaveLength(2);
  });

  it("token.created and token.revoked carry the token's project_ids and never the secret", async () => {
    const org = "org_audit_3";
    const sa = (await api.createSa({ organizationId: org, name: name() })).serviceAccount!;
    const expireTime = new Date(Date.now() + 86_400_000);
    const { token, secret } = await api.createToken({
      organizationId: org,
      serviceAccountId: sa.id,
      label: "release",
      scopes: ["api_keys:create", "api_keys:read"],
      projectIds: ["p_one", "p_two"],
      environments: ["live"],
      expireTime,
      actor: userActor("user_c"),
    });
    const created = await eventsOf(org, token!.id);
    expect(created).toHaveLength(1);
    expect(created[0]).toMatchObject({
      organizationId: org,
      projectIds: ["p_one", "p_two"],
      action: "token.created",
      actor: userActor("user_c"),
      targetType: "token",
      targetId: token!.id,
    });
    expect(created[0]!.occurTime).toEqual(token!.createTime);
    expect(created[0]!.details).toEqual({
      service_account_id: sa.id,
      label: "release",
      prefix: token!.prefix,
      scopes: ["api_keys:create", "api_keys:read"],
      project_ids: ["p_one", "p_two"],
      environments: ["live"],
      expire_time: expireTime.toISOString(),
    });

    const revoked = (await api.revokeToken({ organizationId: org, tokenId: token!.id, actor: userActor("user_d") })).token!;
    await api.revokeToken({ organizationId: org, tokenId: token!.id, actor: userActor("user_d") }); // no-op: no event
    const events = await eventsOf(org, token!.id);
    expect(events.map((e) => e.action)).toEqual(["token.revoked", "token.created"]);
    expect(events[0]).toMatchObject({ projectIds: ["p_one", "p_two"], actor: userActor("user_d"), targetType: "token", targetId: token!.id });
    expect(events[0]!.occurTime).toEqual(revoked.revokeTime);
    const text = JSON.stringify(events);
    expect(text).not.toContain(secret);
    expect(text).not.toContain(secret.slice(8, 40));
  });

  it("service_account.revoked lists the tokens it revoked; a second revoke writes nothing", async () => {
    const org = "org_audit_4";
    const sa = (await api.createSa({ organizationId: org, name: name() })).serviceAccount!;
    const t1 = (await api.createToken({ organizationId: org, serviceAccountId: sa.id })).token!.id;
    const t2 = (await api.createToken({ organizationId: org, serviceAccountId: sa.id })).token!.id;
    const res = await api.revokeSa({ organizationId: org, serviceAccountId: sa.id, actor: userActor("user_e") });
    await api.revokeSa({ organizationId: org, serviceAccountId: sa.id, actor: userActor("user_e") });
    const events = await eventsOf(org, sa.id);
    expect(events.map((e) => e.action)).toEqual(["service_account.revoked", "service_account.created"]);
    expect(events[0]).toMatchObject({ actor: userActor("user_e"), targetType: "service_account", projectIds: [] });
    expect(events[0]!.occurTime).toEqual(res.serviceAccount!.revokeTime);
    expect(events[0]!.details!.revoked_token_count).toBe(2);
    expect([...(events[0]!.details!.revoked_token_ids as string[])].sort()).toEqual([t1, t2].sort());
    // The tokens revoked with the account get no event of their own: the account's event lists them.
    expect((await eventsOf(org, t1)).map((e) => e.action)).toEqual(["token.created"]);
    const [{ n: total }] = (await sql<{ n: string }>(db.url, `select count(*) as n from audit_events where organization_id = $1`, [org])) as [{ n: string }];
    expect(total).toBe("4");
  });

  it("a refused mutation writes no event", async () => {
    const org = "org_audit_5";
    const sa = (await api.createSa({ organizationId: org, name: "only" })).serviceAccount!;
    const before = await rowCounts();
    await expectInvalid(api.createSa({ organizationId: org, name: "" }), "name");
    await expectError(api.createSa({ organizationId: org, name: "only" }), Code.ALREADY_EXISTS, "ERROR_REASON_SERVICE_ACCOUNT_NAME_TAKEN");
    await expectInvalid(api.updateSa({ organizationId: org, serviceAccountId: sa.id, updateMask: ["bogus"] }), "update_mask");
    await expectError(api.updateSa({ organizationId: org, serviceAccountId: "sa_x", name: "n" }), Code.NOT_FOUND, "ERROR_REASON_SERVICE_ACCOUNT_NOT_FOUND");
    await expectInvalid(api.createToken({ organizationId: org, serviceAccountId: sa.id, scopes: [] }), "scopes");
    await expectError(api.revokeToken({ organizationId: org, tokenId: "tok_x" }), Code.NOT_FOUND, "ERROR_REASON_TOKEN_NOT_FOUND");
    expect(await rowCounts()).toEqual(before);
  });
});

describe("a mutation and its event commit together or not at all", () => {
  async function withTrigger(table: string, fn: () => Promise<void>) {
    await sql(db.url, `create or replace function pw_test_refuse() returns trigger language plpgsql as $$ begin raise exception 'refused by test trigger'; end $$`);
    await sql(db.url, `create trigger pw_test_refuse before insert or update on ${table} for each row execute function pw_test_refuse()`);
    try {
      await fn();
    } finally {
      await sql(db.url, `drop trigger if exists pw_test_refuse on ${table}`);
    }
  }

  it("when the audit event can't be written, no mutation is committed", async () => {
    const org = "org_atomic";
    const sa = (await api.createSa({ organizationId: org, name: "atomic" })).serviceAccount!;
    const tok = (await api.createToken({ organizationId: org, serviceAccountId: sa.id })).token!;
    const before = await rowCounts();
    await withTrigger("audit_events", async () => {
      const calls: [string, () => Promise<unknown>][] = [
        ["CreateServiceAccount", () => api.createSa({ organizationId: org, name: "never" })],
        ["UpdateServiceAccount", () => api.updateSa({ organizationId: org, serviceAccountId: sa.id, name: "renamed", description: "changed", updateMask: ["*"] })],
        ["CreateToken", () => api.createToken({ organizationId: org, serviceAccountId: sa.id })],
        ["RevokeToken", () => api.revokeToken({ organizationId: org, tokenId: tok.id })],
        ["RevokeServiceAccount", () => api.revokeSa({ organizationId: org, serviceAccountId: sa.id })],
      ];
      for (const [method, run] of calls) {
        const e = await expectError(run(), Code.UNKNOWN, "ERROR_REASON_UNEXPECTED");
        expect(e.message, method).not.toContain("refused by test trigger");
      }
    });
    expect(await rowCounts()).toEqual(before);
    // The failed mints were logged as unexpected errors, without their secrets.
    expect(server.logs.text).toContain("unexpected error");
    expect(server.logs.text).not.toMatch(/pw_mgmt_[0-9A-Za-z]{5,}/);
    const got = (await api.getSa(org, sa.id)).serviceAccount!;
    expect(got).toMatchObject({ name: "atomic", description: "", activeTokenCount: 1 });
  });

  it("when the mutation can't be written, no event is committed", async () => {
    const org = "org_atomic_2";
    const sa = (await api.createSa({ organizationId: org, name: "atomic" })).serviceAccount!;
    const before = await rowCounts();
    await withTrigger("tokens", async () => {
      await expectError(api.createToken({ organizationId: org, serviceAccountId: sa.id }), Code.UNKNOWN, "ERROR_REASON_UNEXPECTED");
    });
    await withTrigger("service_accounts", async () => {
      await expectError(api.createSa({ organizationId: org, name: "x" }), Code.UNKNOWN, "ERROR_REASON_UNEXPECTED");
    });
    expect(await rowCounts()).toEqual(before);
  });
});

describe("ListAuditEvents", () => {
  const org = "org_audit_list";
  let saId: string;
  const tokenIds: Record<string, string> = {};

  beforeAll(async () => {
    saId = (await api.createSa({ organizationId: org, name: "lister" })).serviceAccount!.id;
    const mk = async (key: string, projectIds: string[]) => {
      tokenIds[key] = (await api.createToken({ organizationId: org, serviceAccountId: saId, projectIds, label: key })).token!.id;
    };
    await mk("p1", ["p1"]);
    await mk("p1p2", ["p1", "p2"]);
    await mk("p2", ["p2"]);
    await mk("none", []);
    await mk("p10", ["p10"]);
    await api.revokeToken({ organizationId: org, tokenId: tokenIds.p1! });
    await api.updateSa({ organizationId: org, serviceAccountId: saId, description: "updated" });
    // Another organization's events, with the same project ids.
    const other = (await api.createSa({ organizationId: "org_audit_other", name: "lister" })).serviceAccount!;
    await api.createToken({ organizationId: "org_audit_other", serviceAccountId: other.id, projectIds: ["p1"] });
  });

  it("lists the organization's events newest first", async () => {
    const events = (await api.listAudit({ organizationId: org })).events;
    const rows = await sql<{ id: string }>(db.url, `select id from audit_events where organization_id = $1 order by seq desc`, [org]);
    expect(events.map((e) => e.id)).toEqual(rows.map((r) => r.id));
    expect(events.map((e) => e.action)).toEqual([
      "service_account.updated",
      "token.revoked",
      "token.created",
      "token.created",
      "token.created",
      "token.created",
      "token.created",
      "service_account.created",
    ]);
    for (let i = 1; i < events.length; i++) expect(events[i - 1]!.occurTime!.getTime()).toBeGreaterThanOrEqual(events[i]!.occurTime!.getTime());
    expect(events.every((e) => e.organizationId === org)).toBe(true);
  });

  it("project_id returns only the events whose project_ids contain it", async () => {
    const p1 = (await api.listAudit({ organizationId: org, projectId: "p1" })).events;
    expect(p1.map((e) => [e.action, e.targetId])).toEqual([
      ["token.revoked", tokenIds.p1],
      ["token.created", tokenIds.p1p2],
      ["token.created", tokenIds.p1],
    ]);
    expect(p1.every((e) => e.projectIds.includes("p1") && e.organizationId === org)).toBe(true);
    const p2 = (await api.listAudit({ organizationId: org, projectId: "p2" })).events;
    expect(p2.map((e) => e.targetId)).toEqual([tokenIds.p2, tokenIds.p1p2]);
    expect((await api.listAudit({ organizationId: org, projectId: "p10" })).events.map((e) => e.targetId)).toEqual([tokenIds.p10]);
    expect((await api.listAudit({ organizationId: org, projectId: "p3" })).events).toEqual([]);
  });

  it("pages through every event exactly once, in order", async () => {
    const full = (await api.listAudit({ organizationId: org, pageSize: 200 })).events.map((e) => e.id);
    for (const pageSize of [1, 3, 7]) {
      const { items, pages } = await allPages(async (pageToken) => {
        const r = await api.listAudit({ organizationId: org, pageSize, pageToken });
        return { items: r.events.map((e) => e.id), next: r.nextPageToken };
      }, pageSize);
      expect(items).toEqual(full);
      expect(pages).toBe(Math.ceil(full.length / pageSize));
    }
    const filtered = await allPages(async (pageToken) => {
      const r = await api.listAudit({ organizationId: org, projectId: "p1", pageSize: 2, pageToken });
      return { items: r.events.map((e) => e.targetId), next: r.nextPageToken };
    }, 2);
    expect(filtered.items).toEqual([tokenIds.p1, tokenIds.p1p2, tokenIds.p1]);
  });

  it("refuses a page token from another filter or organization, or a tampered one", async () => {
    const first = await api.listAudit({ organizationId: org, pageSize: 2 });
    expect(first.nextPageToken).not.toBe("");
    await expectInvalid(api.listAudit({ organizationId: org, projectId: "p1", pageSize: 2, pageToken: first.nextPageToken }), "page_token", "ERROR_REASON_INVALID_PAGE_TOKEN");
    await expectInvalid(api.listAudit({ organizationId: "org_audit_other", pageSize: 2, pageToken: first.nextPageToken }), "page_token", "ERROR_REASON_INVALID_PAGE_TOKEN");
    const t = first.nextPageToken;
    const tampered = t.slice(0, 3) + (t[3] === "A" ? "B" : "A") + t.slice(4);
    await expectInvalid(api.listAudit({ organizationId: org, pageSize: 2, pageToken: tampered }), "page_token", "ERROR_REASON_INVALID_PAGE_TOKEN");
    // The same page size is not part of the binding: a different one is fine.
    expect((await api.listAudit({ organizationId: org, pageSize: 5, pageToken: first.nextPageToken })).events.length).toBe(5);
  });

  it("validates organization_id, project_id and page_size", async () => {
    await expectInvalid(api.listAudit({ organizationId: "" }), "organization_id");
    await expectInvalid(api.listAudit({ organizationId: "bad org" }), "organization_id");
    await expectInvalid(api.listAudit({ organizationId: org, projectId: "-p" }), "project_id");
    await expectInvalid(api.listAudit({ organizationId: org, pageSize: -1 }), "page_size");
  });

  it("never shows another organization's events", async () => {
    const other = (await api.listAudit({ organizationId: "org_audit_other", projectId: "p1" })).events;
    expect(other).toHaveLength(1);
    expect(other[0]!.organizationId).toBe("org_audit_other");
    expect((await api.listAudit({ organizationId: "org_audit_nobody" })).events).toEqual([]);
  });
});

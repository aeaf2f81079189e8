import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, createTestDatabase, failure, startTestServer, type TestDatabase, type TestServer, userActor } from "../support/harness";

let db: TestDatabase;
let server: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db.url, { METRICS_ADDRESS: "127.0.0.1:0", LOG_LEVEL: "trace" });
});
afterAll(async () => {
  await server?.stop();
  await db?.drop();
});

/** A full create / authorize / revoke cycle, with a bad call and a denial in it. */
async function cycle(): Promise<{ secret: string; tokenId: string }> {
  const { serviceAccounts, tokens, authorization } = server.clients;
  const sa = await call(serviceAccounts.createServiceAccount.bind(serviceAccounts), { organizationId: "org_obs", name: `obs-${Math.random()}`, description: "", actor: userActor() });
  const created = await call(tokens.createToken.bind(tokens), {
    organizationId: "org_obs",
    serviceAccountId: sa.serviceAccount!.id,
    label: "obs",
    scopes: ["usage:read"],
    projectIds: [],
    environments: [],
    actor: userActor(),
  });
  const q = { token: created.secret, scope: "usage:read", projectId: "", environment: "", organizationId: "" };
  expect((await call(authorization.authorize.bind(authorization), q)).allowed).toBe(true);
  expect((await call(authorization.authorize.bind(authorization), q)).allowed).toBe(true);
  expect((await call(authorization.authorize.bind(authorization), { ...q, scope: "billing:write" })).allowed).toBe(false);
  // A token pasted where it does not belong: in a label and as an actor id must not reach the logs either.
  await failure(call(tokens.createToken.bind(tokens), { organizationId: "org_obs", serviceAccountId: sa.serviceAccount!.id, label: created.secret, scopes: ["nope"], projectIds: [], environments: [], actor: userActor(created.secret) }));
  await failure(call(authorization.authorize.bind(authorization), { ...q, scope: "" }));
  await call(tokens.revokeToken.bind(tokens), { organizationId: "org_obs", tokenId: created.token!.id, actor: userActor() });
  expect((await call(authorization.authorize.bind(authorization), q)).allowed).toBe(false);
  await server.container.lastUsed.flush();
  return { secret: created.secret, tokenId: created.token!.id };
}

describe("logs", () => {
  it("are JSON lines, one per call with a request id, and never contain a token secret", async () => {
    const { secret, tokenId } = await cycle();
    const lines = server.logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.length).toBeGreaterThan(5);
    const calls = lines.filter((l) => l.msg === "call finished");
    expect(calls.map((l) => l.method)).toEqual(expect.arrayContaining(["CreateServiceAccount", "CreateToken", "RevokeToken", "Authorize"]));
    for (const l of calls) expect(l.request_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(server.logs.text).toContain(tokenId);
    expect(server.logs.text).not.toContain(secret);
    expect(server.logs.text).not.toContain(secret.slice(8, 40));
    expect(server.logs.text).not.toContain(secret.slice(-20));
  });

  it("uses the caller's x-request-id when it sends one", async () => {
    const { serviceAccounts } = server.clients;
    const md = new Metadata();
    md.set("x-request-id", "req-from-console-42");
    await call(serviceAccounts.listServiceAccounts.bind(serviceAccounts), { organizationId: "org_obs", pageSize: 0, pageToken: "", includeRevoked: false }, md);
    const line = server.logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.request_id === "req-from-console-42");
    expect(line?.method).toBe("ListServiceAccounts");
  });
});

describe("metrics", () => {
  it("are scraped from METRICS_ADDRESS with latency by method and code, decisions, cache, fallbacks and pool", async () => {
    await cycle();
    const res = await fetch(`http://${server.container.metricsAddress}/metrics`);
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body).toMatch(/grpc_server_handling_seconds_bucket\{le="[^"]+",method="Authorize",code="OK"\} \d+/);
    expect(body).toMatch(/grpc_server_handling_seconds_count\{method="CreateToken",code="OK"\} [1-9]/);
    expect(body).toMatch(/grpc_server_handling_seconds_count\{method="CreateToken",code="INVALID_ARGUMENT"\} [1-9]/);
    expect(body).toMatch(/authorize_decisions_total\{reason="DECISION_REASON_ALLOWED"\} [1-9]/);
    expect(body).toMatch(/authorize_decisions_total\{reason="DECISION_REASON_NOT_AVAILABLE_TO_SERVICE_ACCOUNTS"\} [1-9]/);
    expect(body).toMatch(/authorize_decisions_total\{reason="DECISION_REASON_TOKEN_REVOKED"\} [1-9]/);
    expect(body).toMatch(/authorize_token_cache_lookups_total\{result="hit"\} [1-9]/);
    expect(body).toMatch(/authorize_token_cache_lookups_total\{result="miss"\} [1-9]/);
    expect(body).toMatch(/authorize_fallbacks_total\{kind="postgres_lookup"\} [1-9]/);
    expect(body).toMatch(/db_pool_connections\{state="used"\} \d+/);
    expect(body).toMatch(/revocation_cache_trusted 1/);
    expect(body).toMatch(/process_resident_memory_bytes \d+/);
    expect((await fetch(`http://${server.container.metricsAddress}/other`)).status).toBe(404);
  });
});

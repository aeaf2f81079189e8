import { status } from "@grpc/grpc-js";
import { Client as PgClient } from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, connect, createTestDatabase, failure, REDIS_URL, sql, type TestDatabase, testRedisPrefix, userActor } from "../support/harness";
import { startServiceProcess } from "../support/process";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe("graceful shutdown on SIGTERM", () => {
  it("refuses new calls, lets the in-flight call finish, flushes last-used times and exits 0", async () => {
    const proc = await startServiceProcess({
      DATABASE_URL: db.url,
      REDIS_URL,
      REDIS_KEY_PREFIX: testRedisPrefix(),
      LISTEN_ADDRESS: "127.0.0.1:0",
      LAST_USED_FLUSH_INTERVAL_MS: "60000",
      SHUTDOWN_GRACE_MS: "10000",
    });
    const clients = connect(proc.address);
    const { serviceAccounts, tokens, authorization } = clients;
    const sa = await call(serviceAccounts.createServiceAccount.bind(serviceAccounts), { organizationId: "org_sd", name: "sd", description: "", actor: userActor() });
    const saId = sa.serviceAccount!.id;
    const tokenReq = { organizationId: "org_sd", serviceAccountId: saId, label: "t", scopes: ["org:read"], projectIds: [], environments: [], actor: userActor() };
    const created = await call(tokens.createToken.bind(tokens), tokenReq);
    const decision = await call(authorization.authorize.bind(authorization), { token: created.secret, scope: "org:read", projectId: "", environment: "", organizationId: "" });
    expect(decision.allowed).toBe(true);
    // Nothing flushed yet: the flush interval is a minute.
    expect((await sql(db.url, "select last_used_time from tokens where id = $1", [created.token!.id]))[0]).toEqual({ last_used_time: null });

    // Hold the service account's row lock so the next CreateToken is in flight when SIGTERM arrives.
    const locker = new PgClient({ connectionString: db.url });
    await locker.connect();
    await locker.query("begin");
    await locker.query("select id from service_accounts where id = $1 for update", [saId]);
    const inFlight = call(tokens.createToken.bind(tokens), { ...tokenReq, label: "in-flight" });
    await new Promise((r) => setTimeout(r, 300));

    proc.proc.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    const refused = await failure(call(serviceAccounts.getServiceAccount.bind(serviceAccounts), { organizationId: "org_sd", serviceAccountId: saId }));
    expect(refused.code).toBe(status.UNAVAILABLE);
    expect(proc.proc.exitCode).toBeNull(); // still draining the in-flight call

    await locker.query("commit");
    await locker.end();
    const finished = await inFlight;
    expect(finished.token?.label).toBe("in-flight");
    expect(await proc.exited).toBe(0);
    clients.close();

    const rows = await sql<{ last_used_time: Date | null }>(db.url, "select last_used_time from tokens where id = $1", [created.token!.id]);
    expect(rows[0]!.last_used_time).toBeInstanceOf(Date);
    expect(proc.output.join("\n")).toContain("shutting down");
  });
});

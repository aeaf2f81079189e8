import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, createTestDatabase, failure, REDIS_URL, startTestServer, type TestDatabase, type TestServer, userActor } from "../support/harness";
import { HealthClient } from "../support/health-client";
import { PrivatePostgres, PrivateRedis } from "../support/private-servers";
import { status } from "@grpc/grpc-js";

const SERVICES = [
  "",
  "pokerworks.identity.v1.ServiceAccountService",
  "pokerworks.identity.v1.TokenService",
  "pokerworks.identity.v1.AuditService",
  "pokerworks.identity.v1.AuthorizationService",
];

describe("health follows PostgreSQL and the revocation cache", () => {
  let pg: PrivatePostgres;
  let redis: PrivateRedis;
  let server: TestServer;
  let health: HealthClient;

  beforeAll(async () => {
    pg = await PrivatePostgres.start();
    redis = await PrivateRedis.start();
    server = await startTestServer(pg.url, { REDIS_URL: redis.url, HEALTH_CHECK_INTERVAL_MS: "100", DATABASE_TIMEOUT_MS: "300", REDIS_TIMEOUT_MS: "100" });
    health = new HealthClient(server.container.address);
  }, 60_000);

  afterAll(async () => {
    health?.close();
    await server?.stop();
    await redis?.stop();
    await pg?.destroy();
  });

  it("serves every service when PostgreSQL and Redis are up", async () => {
    await health.waitFor("SERVING");
    for (const s of SERVICES) expect(await health.check(s)).toBe("SERVING");
  });

  it("is what the container probe (dist/src/healthcheck.js) reports", async () => {
    // The server runs in this process, so the probe must run without blocking its event loop.
    const { execFile } = await import("node:child_process");
    const { MAIN } = await import("../support/process");
    const probe = MAIN.replace(/main\.js$/, "healthcheck.js");
    const run = (address: string) =>
      new Promise<{ code: number; stdout: string }>((resolve) =>
        execFile(process.execPath, [probe], { env: { LISTEN_ADDRESS: address } }, (err, stdout) => resolve({ code: err ? Number(err.code) : 0, stdout })),
      );
    const ok = await run(server.container.address);
    expect(ok.stdout).toContain("SERVING");
    expect(ok.code).toBe(0);
    const down = await run("127.0.0.1:1");
    expect(down.code).toBe(1);
  });

  it("answers NOT_FOUND for a service it does not have", async () => {
    await expect(health.check("no.such.Service")).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it("goes NOT_SERVING while Redis is down, and SERVING again once it is back empty and rebuilt", async () => {
    const watch = health.watch("pokerworks.identity.v1.AuthorizationService");
    await redis.kill();
    await health.waitFor("NOT_SERVING", "pokerworks.identity.v1.AuthorizationService");
    expect(await health.check("")).toBe("NOT_SERVING");
    // The audit trail only needs PostgreSQL.
    expect(await health.check("pokerworks.identity.v1.AuditService")).toBe("SERVING");
    await redis.start();
    await health.waitFor("SERVING", "pokerworks.identity.v1.AuthorizationService");
    await health.waitFor("SERVING");
    await new Promise((r) => setTimeout(r, 200));
    watch.cancel();
    expect(watch.statuses[0]).toBe("SERVING");
    expect(watch.statuses).toContain("NOT_SERVING");
    expect(watch.statuses[watch.statuses.length - 1]).toBe("SERVING");
  });

  it("goes NOT_SERVING while PostgreSQL is down, issuance answers UNAVAILABLE, and it recovers without a restart", async () => {
    await pg.stop();
    await health.waitFor("NOT_SERVING");
    for (const s of SERVICES) expect(await health.check(s)).toBe("NOT_SERVING");
    const { serviceAccounts } = server.clients;
    const err = await failure(call(serviceAccounts.createServiceAccount.bind(serviceAccounts), { organizationId: "org_h", name: "x", description: "", actor: userActor() }));
    expect(err.code).toBe(status.UNAVAILABLE);
    expect(err.reason).toBe("ERROR_REASON_DEPENDENCY_UNAVAILABLE");
    await pg.start();
    await health.waitFor("SERVING", "", 20_000);
    const ok = await call(serviceAccounts.createServiceAccount.bind(serviceAccounts), { organizationId: "org_h", name: "x", description: "", actor: userActor() });
    expect(ok.serviceAccount?.name).toBe("x");
  }, 60_000);
});

describe("health on shutdown", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("reports NOT_SERVING as soon as shutdown begins", async () => {
    const server = await startTestServer(db.url, { REDIS_URL });
    const health = new HealthClient(server.container.address);
    await health.waitFor("SERVING");
    const watch = health.watch("");
    await new Promise((r) => setTimeout(r, 100));
    server.container.health.drain();
    await new Promise((r) => setTimeout(r, 200));
    expect(watch.statuses).toEqual(["SERVING", "NOT_SERVING"]);
    watch.cancel();
    health.close();
    await server.stop();
  });
});

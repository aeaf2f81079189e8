/**
 * PostgreSQL stopped, on a private cluster this file starts (the shared one is never
 * touched): issuance answers UNAVAILABLE with a clear message and quickly, warm Authorize
 * keeps answering for as long as its cached record may be trusted (TOKEN_CACHE_TTL_MS, with
 * the Redis revocation check) and then fails closed, health reports NOT_SERVING, and
 * everything recovers when PostgreSQL returns, without restarting the service.
 */
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authorize, createServiceAccount, createToken, reasonName, revokeToken, sleep, wellFormedToken } from "../support/authz";
import { call, failure, startTestServer, type TestServer, userActor } from "../support/harness";
import { HealthClient } from "../support/health-client";
import { PrivatePostgres } from "../support/private-servers";

const CACHE_TTL_MS = 4_000;
let pg: PrivatePostgres;
let server: TestServer;
let health: HealthClient;

beforeAll(async () => {
  pg = await PrivatePostgres.start();
  server = await startTestServer(pg.url, {
    TOKEN_CACHE_TTL_MS: String(CACHE_TTL_MS),
    HEALTH_CHECK_INTERVAL_MS: "100",
    DATABASE_TIMEOUT_MS: "1000",
    LOG_LEVEL: "warn",
  });
  health = new HealthClient(server.container.address);
}, 120_000);

afterAll(async () => {
  if (process.env.SHOW_LOGS) console.log(server?.logs.lines.filter((l) => /unexpected/.test(l)).join("\n"));
  health?.close();
  await server?.stop();
  await pg?.destroy();
});

describe("PostgreSQL stopped", () => {
  it("issuance is UNAVAILABLE, warm Authorize answers within the cache TTL then fails closed, health says so, and all recovers on return", async () => {
    const c = server.clients;
    const org = "org_pg_down";
    const sa = await createServiceAccount(c, org, "warm");
    const active = await createToken(c, org, sa, { scopes: ["projects:read"] });
    const revoked = await createToken(c, org, sa, { scopes: ["projects:read"] });
    await revokeToken(c, revoked);
    await health.waitFor("SERVING");
    // Warm the cache.
    expect((await authorize(c, { token: active.secret, scope: "projects:read" })).allowed).toBe(true);
    expect(reasonName((await authorize(c, { token: revoked.secret, scope: "projects:read" })).reason)).toBe("DECISION_REASON_TOKEN_REVOKED");

    await pg.stop();
    const down = performance.now();

    // Issuance: UNAVAILABLE with a clear message, answered quickly (no hang).
    const issuance: [string, () => Promise<unknown>][] = [
      ["CreateServiceAccount", () => call(c.serviceAccounts.createServiceAccount.bind(c.serviceAccounts), { organizationId: org, name: "new", description: "", actor: userActor() })],
      ["CreateToken", () => call(c.tokens.createToken.bind(c.tokens), { organizationId: org, serviceAccountId: sa, label: "x", scopes: ["org:read"], projectIds: [], environments: [], actor: userActor() })],
      ["RevokeToken", () => call(c.tokens.revokeToken.bind(c.tokens), { organizationId: org, tokenId: active.tokenId, actor: userActor() })],
      ["GetServiceAccount", () => call(c.serviceAccounts.getServiceAccount.bind(c.serviceAccounts), { organizationId: org, serviceAccountId: sa })],
      ["ListAuditEvents", () => call(c.audit.listAuditEvents.bind(c.audit), { organizationId: org, projectId: "", pageSize: 0, pageToken: "" })],
    ];
    for (const [name, rpc] of issuance) {
      const started = performance.now();
      const e = await failure(rpc());
      expect({ name, code: status[e.code], reason: e.reason }).toEqual({ name, code: "UNAVAILABLE", reason: "ERROR_REASON_DEPENDENCY_UNAVAILABLE" });
      expect(e.message).toMatch(/unavailable; retry with backoff/);
      expect(performance.now() - started, name).toBeLessThan(5_000);
    }

    // Health: NOT_SERVING overall and per service.
    await health.waitFor("NOT_SERVING", "", 5_000);
    for (const svc of ["pokerworks.identity.v1.ServiceAccountService", "pokerworks.identity.v1.TokenService", "pokerworks.identity.v1.AuditService", "pokerworks.identity.v1.AuthorizationService"])
      expect(await health.check(svc), svc).toBe("NOT_SERVING");

    // Warm Authorize: the cached records are still vouched for by the Redis check. (A Redis
    // check that times out on an overloaded machine makes one answer UNAVAILABLE, never wrong.)
    let warmAnswers = 0;
    let warmUnavailable = 0;
    const decide = (token: string) =>
      authorize(c, { token, scope: "projects:read" }).then(
        (r) => (r.allowed ? "allowed" : reasonName(r.reason)),
        (e: { code: number }) => status[e.code]!,
      );
    while (performance.now() - down < CACHE_TTL_MS - 1_500) {
      const [a, r] = [await decide(active.secret), await decide(revoked.secret)];
      expect(["allowed", "UNAVAILABLE"]).toContain(a);
      expect(["DECISION_REASON_TOKEN_REVOKED", "UNAVAILABLE"]).toContain(r);
      if (a === "allowed" && r === "DECISION_REASON_TOKEN_REVOKED") warmAnswers++;
      else warmUnavailable++;
      await sleep(50);
    }
    expect(warmAnswers).toBeGreaterThan(5);
    expect(warmUnavailable).toBeLessThanOrEqual(warmAnswers / 10);
    // A token never seen can't be looked up: UNAVAILABLE, never a guess.
    expect(status[(await failure(authorize(c, { token: wellFormedToken(), scope: "projects:read" }))).code]).toBe("UNAVAILABLE");
    // Past the cache TTL nothing vouches for the record any more: fail closed.
    await sleep(Math.max(0, CACHE_TTL_MS + 500 - (performance.now() - down)));
    const closed = await failure(authorize(c, { token: active.secret, scope: "projects:read" }));
    expect(status[closed.code]).toBe("UNAVAILABLE");
    expect(closed.message).toMatch(/retry with backoff/);

    // PostgreSQL returns: everything recovers, same process.
    await pg.start();
    const back = performance.now();
    await health.waitFor("SERVING", "", 15_000);
    const recoveredMs = performance.now() - back;
    expect((await authorize(c, { token: active.secret, scope: "projects:read" })).allowed).toBe(true);
    expect(reasonName((await authorize(c, { token: revoked.secret, scope: "projects:read" })).reason)).toBe("DECISION_REASON_TOKEN_REVOKED");
    const sa2 = await createServiceAccount(c, org, "after");
    const fresh = await createToken(c, org, sa2, { scopes: ["org:read"] });
    expect((await authorize(c, { token: fresh.secret, scope: "org:read" })).allowed).toBe(true);
    await revokeToken(c, active);
    expect(reasonName((await authorize(c, { token: active.secret, scope: "projects:read" })).reason)).toBe("DECISION_REASON_TOKEN_REVOKED");
    console.log(`postgres stop: ${warmAnswers} warm Authorize rounds answered while down; healthy again ${Math.round(recoveredMs)} ms after PostgreSQL returned`);
  }, 90_000);
});

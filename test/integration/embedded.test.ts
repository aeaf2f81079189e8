import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { call, connect, userActor } from "../support/harness";
import { startServiceProcess } from "../support/process";

const dataDir = mkdtempSync(join(tmpdir(), "pw-embedded-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe("the embedded default (no DATABASE_URL, no REDIS_URL)", () => {
  it("runs the whole cycle on PGlite with in-process revocations, and keeps its data across restarts", async () => {
    const env = { EMBEDDED_DATA_DIR: dataDir, LISTEN_ADDRESS: "127.0.0.1:0" };
    const first = await startServiceProcess(env, 60_000);
    const out = first.output.join("\n");
    expect(out).toContain("embedded PostgreSQL");
    expect(out).toContain("REDIS_URL not set");
    expect(out).toContain("single replica");
    expect(out).toMatch(/grpcurl -plaintext 127\.0\.0\.1:\d+ list/);

    let clients = connect(first.address);
    const sa = await call(clients.serviceAccounts.createServiceAccount.bind(clients.serviceAccounts), { organizationId: "org_emb", name: "embedded", description: "", actor: userActor() });
    const created = await call(clients.tokens.createToken.bind(clients.tokens), {
      organizationId: "org_emb",
      serviceAccountId: sa.serviceAccount!.id,
      label: "t",
      scopes: ["projects:read"],
      projectIds: [],
      environments: [],
      actor: userActor(),
    });
    const q = { token: created.secret, scope: "projects:read", projectId: "", environment: "", organizationId: "org_emb" };
    expect((await call(clients.authorization.authorize.bind(clients.authorization), q)).allowed).toBe(true);
    await call(clients.tokens.revokeToken.bind(clients.tokens), { organizationId: "org_emb", tokenId: created.token!.id, actor: userActor() });
    const after = await call(clients.authorization.authorize.bind(clients.authorization), q);
    expect(after.allowed).toBe(false);
    expect(after.reason).toBe(5 /* DECISION_REASON_TOKEN_REVOKED */);
    clients.close();
    expect(await first.kill("SIGTERM")).toBe(0);

    const second = await startServiceProcess(env, 60_000);
    clients = connect(second.address);
    const again = await call(clients.serviceAccounts.getServiceAccount.bind(clients.serviceAccounts), { organizationId: "org_emb", serviceAccountId: sa.serviceAccount!.id });
    expect(again.serviceAccount?.name).toBe("embedded");
    const stillRevoked = await call(clients.authorization.authorize.bind(clients.authorization), q);
    expect(stillRevoked.allowed).toBe(false);
    clients.close();
    expect(await second.kill("SIGTERM")).toBe(0);
  }, 120_000);
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, createTestDatabase, startTestServer, type TestDatabase, type TestServer, userActor } from "../support/harness";

let db: TestDatabase;
let server: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db.url);
});
afterAll(async () => {
  if (process.env.SHOW_LOGS) console.log(server?.logs.text);
  await server?.stop();
  await db?.drop();
});

describe("smoke", () => {
  it("creates a service account, a token, and authorizes it", async () => {
    const { serviceAccounts, tokens, authorization } = server.clients;
    const sa = await call(serviceAccounts.createServiceAccount.bind(serviceAccounts), {
      organizationId: "org_1",
      name: "ci",
      description: "",
      actor: userActor(),
    });
    expect(sa.serviceAccount?.name).toBe("ci");
    const created = await call(tokens.createToken.bind(tokens), {
      organizationId: "org_1",
      serviceAccountId: sa.serviceAccount!.id,
      label: "deploy",
      scopes: ["projects:read"],
      projectIds: [],
      environments: [],
      actor: userActor(),
    });
    expect(created.secret).toMatch(/^pw_mgmt_[0-9A-Za-z]{38}$/);
    const decision = await call(authorization.authorize.bind(authorization), {
      token: created.secret,
      scope: "projects:read",
      projectId: "",
      environment: "",
      organizationId: "org_1",
    });
    expect(decision.allowed).toBe(true);
  });
});

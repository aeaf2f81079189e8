import { credentials, Metadata, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthorizationServiceClient } from "../../src/generated/pokerworks/identity/v1/authorization_service";
import { ServiceAccountServiceClient } from "../../src/generated/pokerworks/identity/v1/service_account_service";
import { TokenServiceClient } from "../../src/generated/pokerworks/identity/v1/token_service";
import { call, createTestDatabase, failure, startTestServer, type TestDatabase, type TestServer, userActor } from "../support/harness";
import { TestPki, type Pem } from "../support/certs";
import { runServiceExpectingExit } from "../support/process";

let db: TestDatabase;
let server: TestServer;
let pki: TestPki;
let consoleBackend: Pem;
let equityApi: Pem;
let rogue: Pem;
let scanner: Pem;
let port: string;

beforeAll(async () => {
  pki = new TestPki();
  const serverCert = pki.issue("server", "DNS:localhost,IP:127.0.0.1", "serverAuth");
  consoleBackend = pki.issue("console-backend", "DNS:console-backend", "clientAuth");
  equityApi = pki.issue("equity-api", "DNS:equity-api,URI:spiffe://pokerworks/equity-api", "clientAuth");
  scanner = pki.issue("secret-scanner", "DNS:secret-scanner", "clientAuth");
  const rogueCa = new TestPki("Rogue CA");
  rogue = rogueCa.issue("rogue", "DNS:console-backend", "clientAuth");
  db = await createTestDatabase();
  server = await startTestServer(db.url, {
    TLS_CERT_FILE: serverCert.certFile,
    TLS_KEY_FILE: serverCert.keyFile,
    TLS_CLIENT_CA_FILE: pki.ca.certFile,
  });
  port = server.container.address.split(":").pop()!;
});

afterAll(async () => {
  await server?.stop();
  await db?.drop();
});

const tls = (client?: Pem, ca = pki.ca.cert) => credentials.createSsl(ca, client?.key ?? null, client?.cert ?? null);
const deadline = () => ({ deadline: Date.now() + 3000 });

describe("mutual TLS and the caller policy", () => {
  it("lets the console backend issue tokens and any internal service authorize them", async () => {
    const sa = new ServiceAccountServiceClient(`localhost:${port}`, tls(consoleBackend));
    const tokens = new TokenServiceClient(`localhost:${port}`, tls(consoleBackend));
    const created = await call(sa.createServiceAccount.bind(sa), { organizationId: "org_tls", name: "tls", description: "", actor: userActor() });
    const token = await call(tokens.createToken.bind(tokens), {
      organizationId: "org_tls",
      serviceAccountId: created.serviceAccount!.id,
      label: "t",
      scopes: ["usage:read"],
      projectIds: [],
      environments: [],
      actor: userActor(),
    });
    const authz = new AuthorizationServiceClient(`localhost:${port}`, tls(equityApi));
    const decision = await call(authz.authorize.bind(authz), { token: token.secret, scope: "usage:read", projectId: "", environment: "", organizationId: "" });
    expect(decision.allowed).toBe(true);
    // Usage records which service asked, as proven by its certificate.
    await server.container.lastUsed.flush();
    const read = await call(tokens.getToken.bind(tokens), { organizationId: "org_tls", tokenId: token.token!.id });
    expect(read.token?.lastUsedCaller).toBe("equity-api");
    expect(read.token?.lastUsedScope).toBe("usage:read");
    [sa, tokens, authz].forEach((c) => c.close());
  });

  it("answers PERMISSION_DENIED to an authenticated caller the policy does not allow", async () => {
    const sa = new ServiceAccountServiceClient(`localhost:${port}`, tls(equityApi));
    const err = await failure(call(sa.createServiceAccount.bind(sa), { organizationId: "org_tls", name: "nope", description: "", actor: userActor() }));
    expect(err.code).toBe(status.PERMISSION_DENIED);
    expect(err.reason).toBe("ERROR_REASON_CALLER_NOT_ALLOWED");
    expect(err.message).toContain("equity-api");
    sa.close();
  });

  it("lets the secret scanner report leaks and nothing else", async () => {
    const tokens = new TokenServiceClient(`localhost:${port}`, tls(scanner));
    const res = await call(tokens.reportLeakedTokens.bind(tokens), { tokens: ["not-a-token-at-all"], source: "scanner", url: "" });
    expect(res.results).toHaveLength(1);
    const denied = await failure(call(tokens.getToken.bind(tokens), { organizationId: "org_tls", tokenId: "tok_x" }));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    expect(denied.reason).toBe("ERROR_REASON_CALLER_NOT_ALLOWED");
    const equity = new TokenServiceClient(`localhost:${port}`, tls(equityApi));
    const notScanner = await failure(call(equity.reportLeakedTokens.bind(equity), { tokens: ["x"], source: "s", url: "" }));
    expect(notScanner.code).toBe(status.PERMISSION_DENIED);
    tokens.close();
    equity.close();
  });

  it("does not let a client without a certificate connect", async () => {
    const authz = new AuthorizationServiceClient(`localhost:${port}`, tls(undefined));
    const err = await failure(call(authz.authorize.bind(authz), { token: "x", scope: "org:read", projectId: "", environment: "", organizationId: "" }, new Metadata(), deadline()));
    expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain(err.code);
    authz.close();
  });

  it("does not let a certificate from another CA connect, whatever its name", async () => {
    const sa = new ServiceAccountServiceClient(`localhost:${port}`, tls(rogue));
    const err = await failure(call(sa.createServiceAccount.bind(sa), { organizationId: "org_tls", name: "rogue", description: "", actor: userActor() }, new Metadata(), deadline()));
    expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain(err.code);
    sa.close();
  });

  it("does not answer plaintext on the TLS port", async () => {
    const authz = new AuthorizationServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const err = await failure(call(authz.authorize.bind(authz), { token: "x", scope: "org:read", projectId: "", environment: "", organizationId: "" }, new Metadata(), deadline()));
    expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.INTERNAL]).toContain(err.code);
    authz.close();
  });
});

describe("plaintext outside loopback", () => {
  it("refuses to start, naming the variable", async () => {
    const { code, output } = await runServiceExpectingExit({ LISTEN_ADDRESS: "0.0.0.0:0", DATABASE_URL: db.url });
    expect(code).not.toBe(0);
    expect(output).toContain("LISTEN_ADDRESS");
    expect(output).toContain("ALLOW_INSECURE_NON_LOOPBACK");
    expect(output).not.toContain("listening");
  });

  it("starts with a loud warning when explicitly allowed", async () => {
    const { startServiceProcess } = await import("../support/process");
    const proc = await startServiceProcess({ LISTEN_ADDRESS: "0.0.0.0:0", ALLOW_INSECURE_NON_LOOPBACK: "true", DATABASE_URL: db.url });
    expect(proc.output.join("\n")).toMatch(/PLAINTEXT gRPC WITHOUT CLIENT AUTHENTICATION/);
    expect(await proc.kill("SIGTERM")).toBe(0);
  });
});

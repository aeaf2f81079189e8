import { describe, expect, it } from "vitest";
import { ConfigError, isLoopback, loadConfig } from "../../src/config";
import { callerNames, isAllowed, parseCallerPolicy } from "../../src/grpc/caller-policy";

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("configuration", () => {
  it("has working defaults: loopback, embedded database, in-process revocations", () => {
    const c = loadConfig({});
    expect(c.listenAddress).toBe("127.0.0.1:50051");
    expect(c.databaseUrl).toBeUndefined();
    expect(c.redisUrl).toBeUndefined();
    expect(c.tls).toBeUndefined();
    expect(c.redisKeyPrefix).toBe("{pw-identity}:");
  });

  it.each([
    [{ LISTEN_ADDRESS: "nonsense" }, "LISTEN_ADDRESS"],
    [{ LISTEN_ADDRESS: "127.0.0.1:70000" }, "LISTEN_ADDRESS"],
    [{ DATABASE_URL: "mysql://x/y" }, "DATABASE_URL"],
    [{ DATABASE_URL: "::::" }, "DATABASE_URL"],
    [{ DATABASE_POOL_MAX: "0" }, "DATABASE_POOL_MAX"],
    [{ DATABASE_POOL_MAX: "ten" }, "DATABASE_POOL_MAX"],
    [{ REDIS_URL: "http://localhost" }, "REDIS_URL"],
    [{ REDIS_TIMEOUT_MS: "-5" }, "REDIS_TIMEOUT_MS"],
    [{ TOKEN_CACHE_TTL_MS: "999999999" }, "TOKEN_CACHE_TTL_MS"],
    [{ LOG_LEVEL: "loud" }, "LOG_LEVEL"],
    [{ METRICS_ADDRESS: "9464" }, "METRICS_ADDRESS"],
    [{ TLS_CERT_FILE: "/a.pem" }, "TLS_KEY_FILE"],
    [{ TLS_CERT_FILE: "/a.pem", TLS_KEY_FILE: "/b.pem" }, "TLS_CLIENT_CA_FILE"],
    [{ ALLOW_INSECURE_NON_LOOPBACK: "maybe" }, "ALLOW_INSECURE_NON_LOOPBACK"],
    [{ CALLER_POLICY: "console-backend=BillingService" }, "CALLER_POLICY"],
    [{ CALLER_POLICY: "no-equals-sign" }, "CALLER_POLICY"],
    [{ REDIS_KEY_PREFIX: "has space" }, "REDIS_KEY_PREFIX"],
  ])("refuses %j naming %s", (env, variable) => {
    const err = configError(env);
    expect(err.variable).toBe(variable);
    expect(err.message).toContain(variable);
  });

  it("refuses plaintext on a non-loopback address unless explicitly allowed", () => {
    const err = configError({ LISTEN_ADDRESS: "0.0.0.0:50051" });
    expect(err.variable).toBe("LISTEN_ADDRESS");
    expect(err.message).toMatch(/TLS/);
    expect(loadConfig({ LISTEN_ADDRESS: "0.0.0.0:50051", ALLOW_INSECURE_NON_LOOPBACK: "true" }).allowInsecureNonLoopback).toBe(true);
    expect(loadConfig({ LISTEN_ADDRESS: "0.0.0.0:50051", TLS_CERT_FILE: "c", TLS_KEY_FILE: "k", TLS_CLIENT_CA_FILE: "ca" }).tls).toEqual({
      certFile: "c",
      keyFile: "k",
      clientCaFile: "ca",
    });
  });

  it("knows loopback addresses", () => {
    expect(isLoopback("127.0.0.1:1")).toBe(true);
    expect(isLoopback("127.1.2.3:1")).toBe(true);
    expect(isLoopback("[::1]:1")).toBe(true);
    expect(isLoopback("localhost:1")).toBe(true);
    expect(isLoopback("0.0.0.0:1")).toBe(false);
    expect(isLoopback("10.0.0.1:1")).toBe(false);
    expect(isLoopback("[::]:1")).toBe(false);
    expect(isLoopback("identity.internal:1")).toBe(false);
  });
});

describe("caller policy", () => {
  const policy = parseCallerPolicy("console-backend=ServiceAccountService,TokenService,AuditService,AuthorizationService;*=AuthorizationService");

  it("lets the console backend call everything and any authenticated service call Authorize", () => {
    expect(isAllowed(policy, ["console-backend"], "TokenService")).toBe(true);
    expect(isAllowed(policy, ["console-backend"], "AuthorizationService")).toBe(true);
    expect(isAllowed(policy, ["equity-api"], "AuthorizationService")).toBe(true);
    expect(isAllowed(policy, ["equity-api"], "TokenService")).toBe(false);
    expect(isAllowed(policy, ["equity-api"], "ServiceAccountService")).toBe(false);
    expect(isAllowed(policy, ["equity-api"], "AuditService")).toBe(false);
    expect(isAllowed(policy, [], "AuthorizationService")).toBe(false);
  });

  it("grants single methods", () => {
    const p = parseCallerPolicy("secret-scanner=TokenService.ReportLeakedTokens");
    expect(isAllowed(p, ["secret-scanner"], "TokenService", "ReportLeakedTokens")).toBe(true);
    expect(isAllowed(p, ["secret-scanner"], "TokenService", "CreateToken")).toBe(false);
    expect(() => parseCallerPolicy("x=TokenService.Create.Token")).toThrow();
    expect(() => parseCallerPolicy("x=NoService.Method")).toThrow();
  });

  it("supports * for every service", () => {
    const p = parseCallerPolicy("ops=*");
    expect(isAllowed(p, ["ops"], "AuditService")).toBe(true);
    expect(isAllowed(p, ["other"], "AuditService")).toBe(false);
  });

  it("reads DNS and URI SANs from a certificate", () => {
    expect(callerNames({ subjectaltname: "DNS:console-backend, URI:spiffe://pokerworks/console, IP Address:127.0.0.1" } as never)).toEqual([
      "console-backend",
      "spiffe://pokerworks/console",
    ]);
    expect(callerNames(undefined)).toEqual([]);
  });
});

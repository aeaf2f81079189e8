/**
 * Integration test harness: a fresh PostgreSQL database per test file on the shared server,
 * a private Redis key prefix, a real server on a loopback port and real grpc-js clients.
 */
import { type CallOptions, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import { Client as PgClient } from "pg";
import { afterAll, beforeAll } from "vitest";
import { loadConfig } from "../../src/config";
import { type Container, startContainer } from "../../src/container";
import { BadRequest, ErrorInfo } from "../../src/generated/google/rpc/error_details";
import { Status } from "../../src/generated/google/rpc/status";
import { AuditServiceClient } from "../../src/generated/pokerworks/identity/v1/audit_service";
import { AuthorizationServiceClient } from "../../src/generated/pokerworks/identity/v1/authorization_service";
import { ServiceAccountServiceClient } from "../../src/generated/pokerworks/identity/v1/service_account_service";
import { TokenServiceClient } from "../../src/generated/pokerworks/identity/v1/token_service";
import { createLogger } from "../../src/shared/logger";

export const PG_ADMIN_URL = process.env.TEST_PG_ADMIN_URL ?? "postgresql://postgres@127.0.0.1:5432/test";
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(adminUrl = PG_ADMIN_URL): Promise<TestDatabase> {
  const name = `pw_test_${randomBytes(6).toString("hex")}`;
  const admin = new PgClient({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    async drop() {
      const c = new PgClient({ connectionString: adminUrl });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

/** Runs SQL against a test database (to prove what is and is not stored). */
export async function sql<T = Record<string, unknown>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const c = new PgClient({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as T[];
  } finally {
    await c.end();
  }
}

/** Captures every log line a server writes. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    cb();
  }
  get text(): string {
    return this.lines.join("\n");
  }
}

export interface Clients {
  serviceAccounts: ServiceAccountServiceClient;
  tokens: TokenServiceClient;
  audit: AuditServiceClient;
  authorization: AuthorizationServiceClient;
  close(): void;
}

export function connect(address: string): Clients {
  const creds = credentials.createInsecure();
  const c = {
    serviceAccounts: new ServiceAccountServiceClient(address, creds),
    tokens: new TokenServiceClient(address, creds),
    audit: new AuditServiceClient(address, creds),
    authorization: new AuthorizationServiceClient(address, creds),
  };
  return { ...c, close: () => Object.values(c).forEach((x) => x.close()) };
}

type Callback<Res> = (err: ServiceError | null, res: Res) => void;
/**
 * Promisifies one unary call of a ts-proto grpc-js client: `call(client.createToken.bind(client), req)`.
 * (Typed against the last overload of the generated method, so Req and Res are inferred.)
 */
export function call<Req, Res>(
  fn: (req: Req, metadata: Metadata, options: Partial<CallOptions>, cb: Callback<Res>) => unknown,
  req: Req,
  metadata: Metadata = new Metadata(),
  options: Partial<CallOptions> = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn(req, metadata, options, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

export interface DecodedError {
  code: number;
  message: string;
  reason: string | undefined;
  domain: string | undefined;
  fieldViolations: { field: string; description: string }[];
  detailCount: number;
}

export function decodeStatus(metadata: Metadata): Omit<DecodedError, "code" | "message"> & { status?: Status } {
  const raw = metadata.get("grpc-status-details-bin")[0];
  if (!raw) return { reason: undefined, domain: undefined, fieldViolations: [], detailCount: 0 };
  const status = Status.decode(raw as Buffer);
  let reason: string | undefined;
  let domain: string | undefined;
  let fieldViolations: { field: string; description: string }[] = [];
  for (const any of status.details) {
    if (any.typeUrl.endsWith("google.rpc.ErrorInfo")) {
      const info = ErrorInfo.decode(any.value);
      reason = info.reason;
      domain = info.domain;
    } else if (any.typeUrl.endsWith("google.rpc.BadRequest")) {
      fieldViolations = BadRequest.decode(any.value).fieldViolations.map((v) => ({ field: v.field, description: v.description }));
    }
  }
  return { reason, domain, fieldViolations, detailCount: status.details.length, status };
}

/** Expects the call to fail and returns its decoded status. */
export async function failure(promise: Promise<unknown>): Promise<DecodedError> {
  try {
    await promise;
  } catch (err) {
    const e = err as ServiceError;
    const d = decodeStatus(e.metadata);
    return { code: e.code, message: e.details, reason: d.reason, domain: d.domain, fieldViolations: d.fieldViolations, detailCount: d.detailCount };
  }
  throw new Error("expected the call to fail, but it succeeded");
}

export interface TestServer {
  container: Container;
  clients: Clients;
  logs: LogCapture;
  stop(): Promise<void>;
}

export function testRedisPrefix(): string {
  return `t${randomBytes(6).toString("hex")}`;
}

/** Starts a real server on a loopback port against `databaseUrl`. */
export async function startTestServer(databaseUrl: string, env: Record<string, string> = {}): Promise<TestServer> {
  const logs = new LogCapture();
  const config = loadConfig({
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    REDIS_KEY_PREFIX: testRedisPrefix(),
    LISTEN_ADDRESS: "127.0.0.1:0",
    LOG_LEVEL: "debug",
    SHUTDOWN_GRACE_MS: "2000",
    ...env,
  });
  const container = await startContainer(config, { log: createLogger(config.logLevel, logs) });
  const clients = connect(container.address);
  return {
    container,
    clients,
    logs,
    async stop() {
      clients.close();
      await container.stop();
    },
  };
}

export const userActor = (id = "user_alice") => ({ kind: { $case: "userId" as const, value: id } });
export const tokenActor = (id = "tok_abc") => ({ kind: { $case: "managementToken" as const, value: id } });

/**
 * The usual life of a test file: a fresh database and a running server before its tests,
 * both gone after. `ready` receives them once they are up.
 */
export function useTestServer(env: Record<string, string>, ready: (server: TestServer, db: TestDatabase) => void): void {
  let db: TestDatabase | undefined;
  let server: TestServer | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startTestServer(db.url, env);
    ready(server, db);
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });
}

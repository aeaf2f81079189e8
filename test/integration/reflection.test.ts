/**
 * Server reflection as grpcurl uses it, through a client that knows none of our protos
 * (test/support/reflection-client.ts): list, describe every service with strict linking,
 * then a JSON call built only from what reflection served.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { type DescMethod, type DescService, fromBinary, fromJson, type JsonObject, toBinary, toJson } from "@bufbuild/protobuf";
import type { FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { Client, credentials, type Metadata, Server, ServerCredentials, type ServiceDefinition, type ServiceError, status } from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditServiceService } from "../../src/generated/pokerworks/identity/v1/audit_service";
import { AuthorizationServiceService } from "../../src/generated/pokerworks/identity/v1/authorization_service";
import { ServiceAccountServiceService } from "../../src/generated/pokerworks/identity/v1/service_account_service";
import { OrganizationPolicyServiceService } from "../../src/generated/pokerworks/identity/v1/organization_policy_service";
import { TokenServiceService } from "../../src/generated/pokerworks/identity/v1/token_service";
import { call, createTestDatabase, decodeStatus, startTestServer, type TestDatabase, type TestServer } from "../support/harness";
import {
  describeAll,
  type Query,
  ReflectionError,
  ReflectionStream,
  type ReflectionVersion,
  ROOT,
  StrictReflectionResolver,
} from "../support/reflection-client";

let db: TestDatabase;
let server: TestServer;
let address: string;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db.url);
  address = server.container.address;
});
afterAll(async () => {
  if (process.env.SHOW_LOGS) console.log(server?.logs.text);
  await server?.stop();
  await db?.drop();
});

/** Our services as the generated grpc-js definitions (an independent source of truth) name them. */
const OUR_DEFINITIONS: ServiceDefinition[] = [
  ServiceAccountServiceService,
  TokenServiceService,
  AuditServiceService,
  AuthorizationServiceService,
  OrganizationPolicyServiceService,
];
const serviceOf = (def: ServiceDefinition) => Object.values(def)[0]!.path.split("/")[1]!;
const methodsOf = (def: ServiceDefinition) =>
  Object.values(def)
    .map((m) => ({ name: m.path.split("/")[2]!, requestStream: m.requestStream, responseStream: m.responseStream }))
    .sort((a, b) => a.name.localeCompare(b.name));
const kindOf = (m: DescMethod) => ({ name: m.name, requestStream: m.methodKind.startsWith("bidi") || m.methodKind.startsWith("client"), responseStream: m.methodKind.startsWith("bidi") || m.methodKind.startsWith("server") });

function unary<Req, Res>(path: string, encode: (r: Req) => Uint8Array, decode: (b: Buffer) => Res, req: Req): Promise<Res> {
  const client = new Client(address, credentials.createInsecure());
  return new Promise<Res>((resolve, reject) => {
    client.makeUnaryRequest(path, (r: Req) => Buffer.from(encode(r)), decode, req, (err: ServiceError | null, res?: Res) => {
      client.close();
      if (err) reject(err);
      else resolve(res as Res);
    });
  });
}

/** Whether the server answers grpc.health.v1.Health (registered by the health feature). */
async function healthRegistered(): Promise<boolean> {
  try {
    await unary("/grpc.health.v1.Health/Check", () => new Uint8Array(), (b) => b, {});
    return true;
  } catch (err) {
    if ((err as ServiceError).code === status.UNIMPLEMENTED) return false;
    return true; // NOT_FOUND etc.: the service exists
  }
}

/** The comment lines right above `<keyword> <name>` in a proto file, as protoc records them. */
function commentAbove(file: string, declaration: RegExp): string {
  const lines = readFileSync(resolve(ROOT, "proto", file), "utf8").split("\n");
  const at = lines.findIndex((l) => declaration.test(l));
  expect(at, `${declaration} in ${file}`).toBeGreaterThan(0);
  const out: string[] = [];
  for (let i = at - 1; i >= 0 && lines[i]!.trim().startsWith("//"); i--) out.unshift(lines[i]!.trim().slice(2));
  return `${out.join("\n")}\n`;
}

function leadingComment(file: FileDescriptorProto, path: number[]): string | undefined {
  return file.sourceCodeInfo?.location.find((l) => l.path.length === path.length && l.path.every((p, i) => p === path[i]))?.leadingComments;
}

describe.each<ReflectionVersion>(["v1", "v1alpha"])("server reflection %s", (version) => {
  it("lists every registered service and describes each one with strict linking, like grpcurl describe", async () => {
    const { services, registry, resolver } = await describeAll(address, version);
    const expected = [
      ...OUR_DEFINITIONS.map(serviceOf),
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      ...((await healthRegistered()) ? ["grpc.health.v1.Health"] : []),
    ].sort();
    expect(services).toEqual(expected);

    for (const def of OUR_DEFINITIONS) {
      const svc = registry.getService(serviceOf(def))!;
      expect(svc.methods.map(kindOf).sort((a, b) => a.name.localeCompare(b.name))).toEqual(methodsOf(def));
    }
    for (const name of ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]) {
      expect(registry.getService(name)!.methods.map((m) => [m.name, m.methodKind])).toEqual([["ServerReflectionInfo", "bidi_streaming"]]);
    }
    if (services.includes("grpc.health.v1.Health")) {
      const health = registry.getService("grpc.health.v1.Health")!.methods.map((m) => [m.name, m.methodKind]);
      expect(health).toEqual(expect.arrayContaining([["Check", "unary"], ["Watch", "server_streaming"]]));
    }
    // Files arrive with their dependency lists, and the well-known types came along.
    expect(resolver.files.get("pokerworks/identity/v1/token_service.proto")!.dependency).toEqual([
      "google/protobuf/duration.proto",
      "google/protobuf/timestamp.proto",
      "pokerworks/identity/v1/actor.proto",
      "pokerworks/identity/v1/token.proto",
    ]);
    expect([...resolver.files.keys()]).toEqual(expect.arrayContaining(["google/protobuf/timestamp.proto", "google/protobuf/field_mask.proto"]));
    // A message field's type resolves across files (what `grpcurl describe <message>` prints).
    const req = registry.getMessage("pokerworks.identity.v1.CreateServiceAccountRequest")!;
    expect(req.fields.find((f) => f.name === "actor")?.message?.typeName).toBe("pokerworks.identity.v1.Actor");
  });

  it("answers a service with its transitive imports: one round trip, nothing left to fetch", async () => {
    const stream = new ReflectionStream(address, version);
    try {
      const resolver = new StrictReflectionResolver(stream);
      await resolver.fileContainingSymbol("pokerworks.identity.v1.ServiceAccountService");
      expect(stream.requests).toBe(1);
      expect([...resolver.files.keys()].sort()).toEqual([
        "google/protobuf/field_mask.proto",
        "google/protobuf/timestamp.proto",
        "pokerworks/identity/v1/actor.proto",
        "pokerworks/identity/v1/service_account.proto",
        "pokerworks/identity/v1/service_account_service.proto",
      ]);
      expect(resolver.link().getService("pokerworks.identity.v1.ServiceAccountService")).toBeDefined();
    } finally {
      stream.close();
    }
  });

  it("serves the comments, as `grpcurl describe` prints them", async () => {
    const { registry } = await describeAll(address, version);
    const svc: DescService = registry.getService("pokerworks.identity.v1.ServiceAccountService")!;
    const file = svc.file.proto;
    const s = file.service.findIndex((x) => x.name === "ServiceAccountService");
    const m = file.service[s]!.method.findIndex((x) => x.name === "CreateServiceAccount");
    const serviceComment = leadingComment(file, [6, s]);
    expect(serviceComment).toBe(commentAbove("pokerworks/identity/v1/service_account_service.proto", /^service ServiceAccountService \{/));
    expect(serviceComment).toMatch(/manages an organization's service accounts/);
    expect(leadingComment(file, [6, s, 2, m])).toBe(
      commentAbove("pokerworks/identity/v1/service_account_service.proto", /^\s*rpc CreateServiceAccount\(/),
    );
  });

  it("finds the file of every kind of symbol", async () => {
    const stream = new ReflectionStream(address, version);
    try {
      const resolver = new StrictReflectionResolver(stream);
      const cases: [string, string][] = [
        ["pokerworks.identity.v1.ServiceAccountService.CreateServiceAccount", "pokerworks/identity/v1/service_account_service.proto"],
        ["pokerworks.identity.v1.CreateServiceAccountRequest", "pokerworks/identity/v1/service_account_service.proto"],
        ["pokerworks.identity.v1.CreateServiceAccountRequest.organization_id", "pokerworks/identity/v1/service_account_service.proto"],
        ["pokerworks.identity.v1.Actor", "pokerworks/identity/v1/actor.proto"],
        ["pokerworks.identity.v1.Actor.kind", "pokerworks/identity/v1/actor.proto"],
        ["pokerworks.identity.v1.ErrorReason", "pokerworks/identity/v1/error_reason.proto"],
        ["pokerworks.identity.v1.ERROR_REASON_INVALID_FIELD", "pokerworks/identity/v1/error_reason.proto"],
        ["google.protobuf.Timestamp", "google/protobuf/timestamp.proto"],
        ["google.rpc.ErrorInfo", "google/rpc/error_details.proto"],
        ["grpc.health.v1.Health.Watch", "grpc/health/v1/health.proto"],
        ["grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto"],
        ["grpc.health.v1.HealthListResponse.StatusesEntry", "grpc/health/v1/health.proto"],
        [`grpc.reflection.${version}.ServerReflectionResponse`, `grpc/reflection/${version}/reflection.proto`],
      ];
      for (const [symbol, fileName] of cases) expect((await resolver.fileContainingSymbol(symbol)).name, symbol).toBe(fileName);
      resolver.link();
    } finally {
      stream.close();
    }
  });

  it("answers unknown names with NOT_FOUND and extension queries like grpc-go, echoing host and request", async () => {
    const stream = new ReflectionStream(address, version, "identity.example:443");
    try {
      const errorOf = async (q: Query) => {
        const r = await stream.send(q);
        expect(r.validHost).toBe("identity.example:443");
        expect(r.originalRequest?.messageRequest).toMatchObject(q);
        return r.messageResponse.case === "errorResponse" ? r.messageResponse.value.errorCode : `no error: ${r.messageResponse.case}`;
      };
      expect(await errorOf({ case: "fileContainingSymbol", value: "pokerworks.identity.v1.Nope" })).toBe(status.NOT_FOUND);
      expect(await errorOf({ case: "fileByFilename", value: "pokerworks/identity/v1/nope.proto" })).toBe(status.NOT_FOUND);
      expect(await errorOf({ case: "fileContainingExtension", value: { containingType: "pokerworks.identity.v1.Actor", extensionNumber: 100 } })).toBe(
        status.NOT_FOUND,
      );
      expect(await errorOf({ case: "allExtensionNumbersOfType", value: "pokerworks.identity.v1.Nope" })).toBe(status.NOT_FOUND);

      const exts = await stream.send({ case: "allExtensionNumbersOfType", value: "pokerworks.identity.v1.Actor" });
      expect(exts.messageResponse).toEqual({
        case: "allExtensionNumbersResponse",
        value: expect.objectContaining({ baseTypeName: "pokerworks.identity.v1.Actor", extensionNumber: [] }),
      });
      const empty = await stream.send({ case: undefined });
      expect(empty.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: status.INVALID_ARGUMENT } });
      // The stream is still usable after error answers.
      expect(await stream.listServices()).toContain("pokerworks.identity.v1.TokenService");
      await expect(stream.files({ case: "fileByFilename", value: "nope.proto" })).rejects.toBeInstanceOf(ReflectionError);
    } finally {
      stream.close();
    }
  });

  it("ends the stream with INVALID_ARGUMENT, not INTERNAL, on a malformed request", async () => {
    const stream = new ReflectionStream(address, version);
    try {
      // field 3 (file_by_filename) announcing 5 bytes and carrying 1.
      const err = (await stream.sendRaw(Buffer.from([0x1a, 0x05, 0x61])).then(
        () => undefined,
        (e: ServiceError) => e,
      )) as ServiceError | undefined;
      expect(err?.code).toBe(status.INVALID_ARGUMENT);
      expect(err?.details).toMatch(/malformed ServerReflectionRequest/);
    } finally {
      stream.close();
    }
  });
});

describe("a call driven by reflection alone (no proto files)", () => {
  const CREATE = { organizationId: "org_r", name: "from-reflection", actor: { userId: "u1" } };

  async function createServiceAccountMethod(): Promise<DescMethod> {
    const { registry } = await describeAll(address, "v1");
    const svc = registry.getService("pokerworks.identity.v1.ServiceAccountService")!;
    const method = svc.methods.find((m) => m.name === "CreateServiceAccount");
    expect(method).toBeDefined();
    return method!;
  }
  const invoke = (method: DescMethod, json: JsonObject) =>
    unary(
      `/${method.parent.typeName}/${method.name}`,
      (r) => toBinary(method.input, r),
      (b) => fromBinary(method.output, b),
      fromJson(method.input, json),
    );

  it("creates a service account from JSON and decodes the answer to JSON", async () => {
    const method = await createServiceAccountMethod();
    const before = Date.now();
    const out = toJson(method.output, await invoke(method, CREATE)) as { serviceAccount: Record<string, unknown> };
    expect(out.serviceAccount).toMatchObject({ organizationId: "org_r", name: "from-reflection" });
    expect(out.serviceAccount.id).toEqual(expect.stringMatching(/\S/));
    const created = Date.parse(out.serviceAccount.createTime as string);
    expect(created).toBeGreaterThanOrEqual(before - 5_000);
    expect(created).toBeLessThanOrEqual(Date.now() + 5_000);

    // The typed client sees the same account.
    const sa = server.clients.serviceAccounts;
    const got = await call(sa.getServiceAccount.bind(sa), { organizationId: "org_r", serviceAccountId: out.serviceAccount.id as string });
    expect(got.serviceAccount?.name).toBe("from-reflection");
  });

  it("rejects unknown JSON fields client side and gets a clear status for bad input", async () => {
    const method = await createServiceAccountMethod();
    expect(() => fromJson(method.input, { ...CREATE, nmae: "typo" })).toThrow(/nmae/);
    const err = (await invoke(method, { ...CREATE, name: "" }).then(
      () => undefined,
      (e: ServiceError) => e,
    )) as ServiceError | undefined;
    expect(err?.code).toBe(status.INVALID_ARGUMENT);
    expect(decodeStatus(err!.metadata as Metadata).fieldViolations.map((v) => v.field)).toContain("name");
  });
});

describe("why not @grpc/reflection 1.0.4", () => {
  it("its dependency-less files fail the strict client, as they fail grpcurl (grpcurl#459)", async () => {
    const pkg = protoLoader.loadSync(
      OUR_DEFINITIONS.map(serviceOf).map((s) => `pokerworks/identity/v1/${s.split(".").pop()!.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase()}.proto`),
      { includeDirs: [resolve(ROOT, "proto"), resolve(ROOT, "third_party/googleapis")] },
    );
    const other = new Server();
    new ReflectionService(pkg).addToServer(other);
    const port = await new Promise<number>((ok, ko) => other.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? ko(e) : ok(p))));
    try {
      const stream = new ReflectionStream(`127.0.0.1:${port}`, "v1");
      try {
        expect(await stream.listServices()).toContain("pokerworks.identity.v1.ServiceAccountService");
      } finally {
        stream.close();
      }
      await expect(describeAll(`127.0.0.1:${port}`, "v1")).rejects.toThrow(/refers to \.?[\w.]+, which neither the file nor its imports \[\] declare/);
    } finally {
      other.forceShutdown();
    }
  });
});

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { clone, create, createFileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { answer, DescriptorIndex, decodeReflectionRequest, splitFileDescriptorSet } from "../../src/grpc/reflection";
import { builtinFileDescriptors } from "../../src/grpc/reflection-descriptors";
import { bufBuild, linkStrict, ROOT, upstreamProtoSet } from "../support/reflection-client";

const DESCRIPTOR_SET = resolve(ROOT, "src/generated/descriptors.binpb");
const decode = (b: Uint8Array) => fromBinary(FileDescriptorProtoSchema, b);
const byName = (files: FileDescriptorProto[]) => new Map(files.map((f) => [f.name, f]));
const ourFiles = () => [...splitFileDescriptorSet(readFileSync(DESCRIPTOR_SET)), ...builtinFileDescriptors()].map(decode);

describe("reflection descriptors", () => {
  it("the built-in health and reflection descriptors are byte for byte what buf makes of the upstream protos", () => {
    const upstream = fromBinary(FileDescriptorSetSchema, upstreamProtoSet()).file;
    const builtin = builtinFileDescriptors();
    expect(builtin.map((b) => decode(b).name).sort()).toEqual(upstream.map((f) => f.name).sort());
    for (const file of upstream) {
      const ours = builtin.find((b) => decode(b).name === file.name)!;
      expect(Buffer.from(ours).toString("hex"), file.name).toBe(Buffer.from(toBinary(FileDescriptorProtoSchema, file)).toString("hex"));
    }
  });

  it("serves our files exactly as `buf build --as-file-descriptor-set` writes them (buf's image metadata removed)", () => {
    const raw = readFileSync(DESCRIPTOR_SET);
    const served = splitFileDescriptorSet(raw);
    // `npm run generate` writes a plain FileDescriptorSet; were it a buf image, buf's field 8042 would be dropped.
    expect(served.map(decode).some((f) => f.$unknown?.length)).toBe(false);
    // …and nothing else: the bytes are those of a plain FileDescriptorSet of the same workspace.
    const plain = splitFileDescriptorSet(bufBuild(ROOT));
    expect(served.map((b) => Buffer.from(b).toString("hex"))).toEqual(plain.map((b) => Buffer.from(b).toString("hex")));
    const names = served.map((b) => decode(b).name);
    expect(names).toContain("pokerworks/identity/v1/service_account_service.proto");
    expect(names).toContain("google/protobuf/timestamp.proto");
    expect(decode(served.find((b) => decode(b).name === "pokerworks/identity/v1/service_account_service.proto")!).dependency).toEqual([
      "google/protobuf/field_mask.proto",
      "pokerworks/identity/v1/actor.proto",
      "pokerworks/identity/v1/service_account.proto",
    ]);
  });

  it("refuses to start on a descriptor set with a missing import", () => {
    const files = splitFileDescriptorSet(readFileSync(DESCRIPTOR_SET)).filter((b) => decode(b).name !== "pokerworks/identity/v1/actor.proto");
    expect(() => DescriptorIndex.build(files)).toThrow(/pokerworks\/identity\/v1\/actor\.proto, imported by .* is not in the descriptor set/);
  });
});

describe("the strict client's linker (what grpcurl does)", () => {
  it("links our files with their dependency lists", () => {
    const registry = linkStrict(byName(ourFiles()));
    for (const s of ["ServiceAccountService", "TokenService", "AuditService", "AuthorizationService"]) {
      expect(registry.getService(`pokerworks.identity.v1.${s}`)).toBeDefined();
    }
    expect(registry.getService("grpc.health.v1.Health")?.methods.map((m) => m.name)).toEqual(["Check", "Watch", "List"]);
  });

  it("rejects a file whose dependency list was stripped, as @grpc/reflection 1.0.4 serves them", () => {
    const files = byName(ourFiles().map((f) => clone(FileDescriptorProtoSchema, f)));
    files.get("pokerworks/identity/v1/service_account_service.proto")!.dependency = [];
    expect(() => linkStrict(files)).toThrow(/service_account_service\.proto: .* refers to \.(google\.protobuf\.FieldMask|pokerworks\.identity\.v1\.\w+), which neither the file nor its imports \[\] declare/);
  });

  it("rejects every file of the set once all dependency lists are stripped", () => {
    for (const victim of ourFiles().filter((f) => f.dependency.length > 0)) {
      const files = byName(ourFiles());
      files.set(victim.name, create(FileDescriptorProtoSchema, { ...victim, dependency: [] }));
      expect(() => linkStrict(files), victim.name).toThrow(new RegExp(`${victim.name.replace(/[./]/g, "\\$&")}: .* refers to`));
    }
  });

  it("rejects a type reached only through an indirect import, and a missing import", () => {
    const files = byName(ourFiles().map((f) => clone(FileDescriptorProtoSchema, f)));
    // service_account_service.proto uses Actor; import it only through service_account.proto (which imports actor.proto, not publicly).
    const sas = files.get("pokerworks/identity/v1/service_account_service.proto")!;
    sas.dependency = sas.dependency.filter((d) => d !== "pokerworks/identity/v1/actor.proto");
    expect(() => linkStrict(files)).toThrow(/refers to \.pokerworks\.identity\.v1\.Actor, which neither/);

    const missing = byName(ourFiles());
    missing.delete("google/protobuf/timestamp.proto");
    expect(() => linkStrict(missing)).toThrow(/imports google\/protobuf\/timestamp\.proto, which reflection did not provide/);
  });
});

describe("the reflection protocol codec", () => {
  it("never throws on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const r = decodeReflectionRequest(bytes);
        expect(typeof r.ok).toBe("boolean");
      }),
      { numRuns: 2000 },
    );
  });

  it("reads the requests the upstream schema writes", () => {
    const schema = createFileRegistry(fromBinary(FileDescriptorSetSchema, upstreamProtoSet())).getMessage("grpc.reflection.v1.ServerReflectionRequest")!;
    const text = fc.string({ unit: "grapheme", maxLength: 30 });
    const query = fc.oneof(
      fc.record({ case: fc.constantFrom("fileByFilename", "fileContainingSymbol", "allExtensionNumbersOfType", "listServices"), value: text }),
      fc.record({ case: fc.constant("fileContainingExtension"), value: fc.record({ containingType: text, extensionNumber: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) }) }),
    );
    fc.assert(
      fc.property(text, query, (host, messageRequest) => {
        const bytes = toBinary(schema, create(schema, { host, messageRequest } as never));
        const decoded = decodeReflectionRequest(bytes);
        expect(decoded).toEqual({ ok: true, host, query: messageRequest, raw: bytes });
      }),
      { numRuns: 500 },
    );
  });

  it("answers a file with its transitive imports, each import once per stream", () => {
    const index = DescriptorIndex.build([...splitFileDescriptorSet(readFileSync(DESCRIPTOR_SET)), ...builtinFileDescriptors()]);
    const names = (a: ReturnType<typeof answer>) => (a.case === "fileDescriptorResponse" ? a.files.map((b) => decode(b).name) : a);
    const sent = new Set<string>();
    const list = () => [];
    const first = names(answer(index, list, { case: "fileContainingSymbol", value: "pokerworks.identity.v1.ServiceAccountService" }, sent));
    expect(first).toEqual([
      "pokerworks/identity/v1/service_account_service.proto",
      "google/protobuf/field_mask.proto",
      "pokerworks/identity/v1/actor.proto",
      "pokerworks/identity/v1/service_account.proto",
      "google/protobuf/timestamp.proto",
    ]);
    // token_service.proto imports timestamp and actor (already sent), duration and token.proto (new).
    expect(names(answer(index, list, { case: "fileContainingSymbol", value: "pokerworks.identity.v1.TokenService" }, sent))).toEqual([
      "pokerworks/identity/v1/token_service.proto",
      "google/protobuf/duration.proto",
      "pokerworks/identity/v1/token.proto",
    ]);
    // The requested file is always sent, even when sent before.
    expect(names(answer(index, list, { case: "fileByFilename", value: "pokerworks/identity/v1/actor.proto" }, sent))).toEqual([
      "pokerworks/identity/v1/actor.proto",
    ]);
  });
});

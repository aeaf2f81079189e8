/**
 * gRPC server reflection (grpc.reflection.v1 and grpc.reflection.v1alpha), so `grpcurl list`,
 * `grpcurl describe` and JSON calls work with no proto files at hand.
 *
 * We do not use @grpc/reflection: version 1.0.4 serves files rebuilt by protobufjs WITHOUT
 * their `dependency` lists, which strict clients such as grpcurl cannot link
 * (fullstorydev/grpcurl#459). Instead we serve the exact FileDescriptorProtos `buf build`
 * wrote into src/generated/descriptors.binpb (`npm run generate`), plus the descriptors of
 * the health and reflection protocols (reflection-descriptors.ts). Like grpc-go, a file is
 * answered together with its transitive imports, leaving out files already sent on the
 * same stream (the requested file itself is always sent).
 */
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import { type Server, type ServerDuplexStream, type ServiceDefinition, status } from "@grpc/grpc-js";
import { builtinFileDescriptors } from "./reflection-descriptors";

export const REFLECTION_SERVICE_NAMES = ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"] as const;

/** Where `npm run generate` writes the descriptor set, seen from src/grpc/ (tests) or dist/src/grpc/ (npm start). */
const DEFAULT_DESCRIPTOR_SET_CANDIDATES = [
  resolve(__dirname, "../generated/descriptors.binpb"),
  resolve(__dirname, "../../../src/generated/descriptors.binpb"),
];

export interface ReflectionOptions {
  /**
   * The names of the services to list. Default: read, at each list_services request, from
   * the services registered on the server, so services added after addReflection (health)
   * are listed too.
   */
  services?: readonly string[] | (() => readonly string[]);
}

/**
 * Registers grpc.reflection.v1.ServerReflection and grpc.reflection.v1alpha.ServerReflection
 * on `server`. Throws at start when the descriptor set is missing or incomplete (a file
 * whose import is not in it), rather than serving files no client can link.
 */
export function addReflection(server: Server, descriptorSetPath?: string, options: ReflectionOptions = {}): void {
  const path = descriptorSetPath ?? DEFAULT_DESCRIPTOR_SET_CANDIDATES.find((p) => existsSync(p));
  if (!path) {
    throw new Error(`reflection: descriptor set not found (looked in ${DEFAULT_DESCRIPTOR_SET_CANDIDATES.join(", ")}); run 'npm run generate'`);
  }
  const index = DescriptorIndex.build([...splitFileDescriptorSet(readFileSync(path)), ...builtinFileDescriptors()]);
  const services = serviceLister(server, options.services);
  for (const name of REFLECTION_SERVICE_NAMES) {
    server.addService(reflectionServiceDefinition(name), { ServerReflectionInfo: reflectionHandler(index, services) });
  }
}

function serviceLister(server: Server, services: ReflectionOptions["services"]): () => readonly string[] {
  if (typeof services === "function") return services;
  if (services) return () => services;
  // grpc-js keeps the registered handlers keyed by "/package.Service/Method" (a private
  // field; @grpc/grpc-js is pinned to an exact version and the tests list every service).
  const handlers = (server as unknown as { handlers?: unknown }).handlers;
  if (!(handlers instanceof Map)) throw new Error("reflection: cannot read the registered services of this grpc-js version; pass options.services");
  return () => [...new Set([...(handlers as Map<string, unknown>).keys()].map((path) => path.split("/")[1] ?? ""))].filter(Boolean);
}

// ---------------------------------------------------------------------------------------
// The descriptor index

export interface IndexedFile {
  readonly name: string;
  /** The serialized FileDescriptorProto, exactly as buf wrote it (minus buf's image metadata). */
  readonly bytes: Uint8Array;
  readonly proto: FileDescriptorProto;
}

/** Field 8042 of a buf image's file: buf's own metadata (`buf_extension`), not part of FileDescriptorProto. */
const BUF_IMAGE_EXTENSION_FIELD = 8042;

/** Splits a serialized google.protobuf.FileDescriptorSet (or buf image) into its files' bytes, untouched but for buf's metadata. */
export function splitFileDescriptorSet(bytes: Uint8Array): Uint8Array[] {
  const reader = new BinaryReader(bytes);
  const files: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (fieldNo === 1 && wireType === WireType.LengthDelimited) files.push(withoutField(reader.bytes(), BUF_IMAGE_EXTENSION_FIELD));
    else reader.skip(wireType, fieldNo);
  }
  return files;
}

function withoutField(bytes: Uint8Array, dropped: number): Uint8Array {
  const reader = new BinaryReader(bytes);
  const kept: Uint8Array[] = [];
  let found = false;
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const [fieldNo, wireType] = reader.tag();
    reader.skip(wireType, fieldNo);
    if (fieldNo === dropped) found = true;
    else kept.push(bytes.subarray(start, reader.pos));
  }
  return found ? Buffer.concat(kept) : bytes;
}

export class DescriptorIndex {
  readonly files = new Map<string, IndexedFile>();
  /** Fully-qualified name (no leading dot) of every element → the file declaring it. */
  readonly symbols = new Map<string, IndexedFile>();
  readonly messages = new Set<string>();
  /** Extended message (no leading dot) → field number → file declaring the extension. */
  readonly extensions = new Map<string, Map<number, IndexedFile>>();

  /** Indexes files; the first one of a name wins. Throws when an import is missing. */
  static build(serializedFiles: Uint8Array[]): DescriptorIndex {
    const index = new DescriptorIndex();
    for (const bytes of serializedFiles) {
      const proto = fromBinary(FileDescriptorProtoSchema, bytes);
      if (!proto.name) throw new Error("reflection: a FileDescriptorProto has no name");
      if (index.files.has(proto.name)) continue;
      const file: IndexedFile = { name: proto.name, bytes, proto };
      index.files.set(proto.name, file);
      index.indexFile(file);
    }
    for (const file of index.files.values()) {
      for (const dep of file.proto.dependency) {
        if (!index.files.has(dep)) throw new Error(`reflection: ${dep}, imported by ${file.name}, is not in the descriptor set`);
      }
    }
    return index;
  }

  private add(name: string, file: IndexedFile): void {
    if (!this.symbols.has(name)) this.symbols.set(name, file);
  }

  private indexFile(file: IndexedFile): void {
    const p = file.proto;
    const scope = p.package ? `${p.package}.` : "";
    for (const e of p.enumType) this.indexEnum(e, scope, file);
    for (const m of p.messageType) this.indexMessage(m, scope, file);
    this.indexExtensions(p.extension, scope, file);
    for (const s of p.service) {
      this.add(`${scope}${s.name}`, file);
      for (const m of s.method) this.add(`${scope}${s.name}.${m.name}`, file);
    }
  }

  private indexEnum(e: EnumDescriptorProto, scope: string, file: IndexedFile): void {
    this.add(`${scope}${e.name}`, file);
    // Enum values are siblings of their enum (C++ scoping rules), as in protoregistry.
    for (const v of e.value) this.add(`${scope}${v.name}`, file);
  }

  private indexMessage(m: DescriptorProto, scope: string, file: IndexedFile): void {
    const name = `${scope}${m.name}`;
    this.add(name, file);
    this.messages.add(name);
    for (const f of m.field) this.add(`${name}.${f.name}`, file);
    for (const o of m.oneofDecl) this.add(`${name}.${o.name}`, file);
    for (const e of m.enumType) this.indexEnum(e, `${name}.`, file);
    for (const n of m.nestedType) this.indexMessage(n, `${name}.`, file);
    this.indexExtensions(m.extension, `${name}.`, file);
  }

  private indexExtensions(fields: FieldDescriptorProto[], scope: string, file: IndexedFile): void {
    for (const x of fields) {
      this.add(`${scope}${x.name}`, file);
      const extendee = x.extendee.replace(/^\./, "");
      let byNumber = this.extensions.get(extendee);
      if (!byNumber) this.extensions.set(extendee, (byNumber = new Map()));
      if (!byNumber.has(x.number)) byNumber.set(x.number, file);
    }
  }

  /**
   * The file followed by its transitive imports (breadth first), leaving out imports already
   * in `sent`, which is updated. The requested file is always included.
   */
  withDependencies(file: IndexedFile, sent: Set<string>): Uint8Array[] {
    const out: Uint8Array[] = [file.bytes];
    sent.add(file.name);
    const visited = new Set([file.name]);
    const queue = [...file.proto.dependency];
    while (queue.length > 0) {
      const name = queue.shift()!;
      if (visited.has(name)) continue;
      visited.add(name);
      const dep = this.files.get(name);
      if (!dep) continue; // impossible: build() checked every import
      if (!sent.has(name)) {
        sent.add(name);
        out.push(dep.bytes);
      }
      queue.push(...dep.proto.dependency);
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------
// The reflection protocol (the same wire format in v1 and v1alpha), encoded by hand

export type ReflectionQuery =
  | { case: "fileByFilename"; value: string }
  | { case: "fileContainingSymbol"; value: string }
  | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
  | { case: "allExtensionNumbersOfType"; value: string }
  | { case: "listServices"; value: string }
  | { case: undefined };

export type ReflectionRequest =
  | { ok: true; host: string; query: ReflectionQuery; raw: Uint8Array }
  | { ok: false; error: string };

/** Decodes a grpc.reflection.*.ServerReflectionRequest; never throws (bad input is answered, not crashed on). */
export function decodeReflectionRequest(raw: Uint8Array): ReflectionRequest {
  try {
    const r = new BinaryReader(raw);
    let host = "";
    let query: ReflectionQuery = { case: undefined };
    while (r.pos < r.len) {
      const [fieldNo, wireType] = r.tag();
      const expect = (t: WireType) => {
        if (wireType !== t) throw new Error(`field ${fieldNo} has wire type ${wireType}`);
      };
      switch (fieldNo) {
        case 1:
          expect(WireType.LengthDelimited);
          host = r.string(true);
          break;
        case 3:
          expect(WireType.LengthDelimited);
          query = { case: "fileByFilename", value: r.string(true) };
          break;
        case 4:
          expect(WireType.LengthDelimited);
          query = { case: "fileContainingSymbol", value: r.string(true) };
          break;
        case 5: {
          expect(WireType.LengthDelimited);
          const sub = new BinaryReader(r.bytes());
          const value: { containingType: string; extensionNumber: number } =
            query.case === "fileContainingExtension" ? query.value : { containingType: "", extensionNumber: 0 };
          while (sub.pos < sub.len) {
            const [n, t] = sub.tag();
            if (n === 1 && t === WireType.LengthDelimited) value.containingType = sub.string(true);
            else if (n === 2 && t === WireType.Varint) value.extensionNumber = sub.int32();
            else if (n === 1 || n === 2) throw new Error(`ExtensionRequest field ${n} has wire type ${t}`);
            else sub.skip(t, n);
          }
          query = { case: "fileContainingExtension", value };
          break;
        }
        case 6:
          expect(WireType.LengthDelimited);
          query = { case: "allExtensionNumbersOfType", value: r.string(true) };
          break;
        case 7:
          expect(WireType.LengthDelimited);
          query = { case: "listServices", value: r.string(true) };
          break;
        default:
          r.skip(wireType, fieldNo);
      }
    }
    return { ok: true, host, query, raw };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

export type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; files: Uint8Array[] }
  | { case: "allExtensionNumbersResponse"; baseTypeName: string; numbers: number[] }
  | { case: "listServicesResponse"; services: string[] }
  | { case: "errorResponse"; code: status; message: string };

export function encodeReflectionResponse(host: string, originalRequest: Uint8Array, answer: ReflectionAnswer): Buffer {
  const w = new BinaryWriter();
  if (host) w.tag(1, WireType.LengthDelimited).string(host);
  w.tag(2, WireType.LengthDelimited).bytes(originalRequest);
  switch (answer.case) {
    case "fileDescriptorResponse":
      w.tag(4, WireType.LengthDelimited).fork();
      for (const f of answer.files) w.tag(1, WireType.LengthDelimited).bytes(f);
      w.join();
      break;
    case "allExtensionNumbersResponse":
      w.tag(5, WireType.LengthDelimited).fork();
      if (answer.baseTypeName) w.tag(1, WireType.LengthDelimited).string(answer.baseTypeName);
      if (answer.numbers.length > 0) {
        w.tag(2, WireType.LengthDelimited).fork();
        for (const n of answer.numbers) w.int32(n);
        w.join();
      }
      w.join();
      break;
    case "listServicesResponse":
      w.tag(6, WireType.LengthDelimited).fork();
      for (const name of answer.services) w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(name).join();
      w.join();
      break;
    case "errorResponse":
      w.tag(7, WireType.LengthDelimited).fork();
      w.tag(1, WireType.Varint).int32(answer.code);
      if (answer.message) w.tag(2, WireType.LengthDelimited).string(answer.message);
      w.join();
      break;
  }
  return Buffer.from(w.finish());
}

/** Answers one query; `sent` is the set of files already sent on this stream. */
export function answer(index: DescriptorIndex, services: () => readonly string[], query: ReflectionQuery, sent: Set<string>): ReflectionAnswer {
  const notFound = (message: string): ReflectionAnswer => ({ case: "errorResponse", code: status.NOT_FOUND, message });
  switch (query.case) {
    case "listServices":
      return { case: "listServicesResponse", services: [...services()].sort() };
    case "fileByFilename": {
      const file = index.files.get(query.value);
      return file ? { case: "fileDescriptorResponse", files: index.withDependencies(file, sent) } : notFound(`file not found: ${query.value}`);
    }
    case "fileContainingSymbol": {
      const file = index.symbols.get(query.value.replace(/^\./, ""));
      return file ? { case: "fileDescriptorResponse", files: index.withDependencies(file, sent) } : notFound(`symbol not found: ${query.value}`);
    }
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = query.value;
      const file = index.extensions.get(containingType.replace(/^\./, ""))?.get(extensionNumber);
      return file
        ? { case: "fileDescriptorResponse", files: index.withDependencies(file, sent) }
        : notFound(`extension not found: ${containingType} field ${extensionNumber}`);
    }
    case "allExtensionNumbersOfType": {
      const type = query.value.replace(/^\./, "");
      if (!index.messages.has(type)) return notFound(`message type not found: ${query.value}`);
      const numbers = [...(index.extensions.get(type)?.keys() ?? [])].sort((a, b) => a - b);
      return { case: "allExtensionNumbersResponse", baseTypeName: type, numbers };
    }
    default:
      return { case: "errorResponse", code: status.INVALID_ARGUMENT, message: "the request names no message_request" };
  }
}

function reflectionHandler(index: DescriptorIndex, services: () => readonly string[]) {
  return (call: ServerDuplexStream<ReflectionRequest, Buffer>) => {
    const sent = new Set<string>();
    let failed = false;
    call.on("data", (request: ReflectionRequest) => {
      if (failed || call.cancelled) return;
      if (!request.ok) {
        failed = true;
        call.emit("error", { code: status.INVALID_ARGUMENT, details: `malformed ServerReflectionRequest: ${request.error}` });
        return;
      }
      call.write(encodeReflectionResponse(request.host, request.raw, answer(index, services, request.query, sent)));
    });
    call.on("end", () => {
      if (!failed) call.end();
    });
  };
}

function reflectionServiceDefinition(serviceName: string): ServiceDefinition {
  return {
    ServerReflectionInfo: {
      path: `/${serviceName}/ServerReflectionInfo`,
      requestStream: true,
      responseStream: true,
      requestSerialize: (req: ReflectionRequest) => Buffer.from(req.ok ? req.raw : []),
      requestDeserialize: (bytes: Buffer) => decodeReflectionRequest(bytes),
      responseSerialize: (res: Buffer) => res,
      responseDeserialize: (bytes: Buffer) => bytes,
      originalName: "serverReflectionInfo",
    },
  };
}

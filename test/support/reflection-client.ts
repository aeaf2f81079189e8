/**
 * A gRPC server reflection client as strict as grpcurl (jhump/protoreflect's grpcreflect +
 * protodesc): it knows no proto file of ours. It speaks the reflection protocol with
 * message types compiled by buf from the UPSTREAM reflection.proto files (shipped in
 * @grpc/reflection), follows every declared import with file_by_filename, and links the
 * files only through their declared imports: a file that uses a type none of its direct
 * imports (or their public imports) declares is an error, exactly what makes grpcurl fail
 * on @grpc/reflection 1.0.4's dependency-less files (grpcurl#459).
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { create, createFileRegistry, type DescMessage, type FileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { Client, type ClientDuplexStream, credentials, type ServiceError } from "@grpc/grpc-js";

export const ROOT = resolve(__dirname, "../..");
const BUF = resolve(ROOT, "node_modules/.bin/buf");

/** Runs `buf build` on a directory of protos (with the given extra flags) and returns the FileDescriptorSet bytes. */
export function bufBuild(dir: string, flags: string[] = []): Uint8Array {
  const out = join(mkdtempSync(join(tmpdir(), "pw-buf-out-")), "set.binpb");
  try {
    execFileSync(BUF, ["build", dir, "--as-file-descriptor-set", ...flags, "-o", out], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
    return readFileSync(out);
  } finally {
    rmSync(dirname(out), { recursive: true, force: true });
  }
}

/** The upstream .proto files of the gRPC protocols, where each package's import path puts them. */
export const UPSTREAM_PROTOS: Record<string, string> = {
  "grpc/health/v1/health.proto": "node_modules/grpc-health-check/proto/health/v1/health.proto",
  "grpc/reflection/v1/reflection.proto": "node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto",
  "grpc/reflection/v1alpha/reflection.proto": "node_modules/@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto",
};

let upstream: Uint8Array | undefined;
/** buf's FileDescriptorSet of the upstream health and reflection protos (no source info). */
export function upstreamProtoSet(): Uint8Array {
  if (upstream) return upstream;
  const dir = mkdtempSync(join(tmpdir(), "pw-upstream-protos-"));
  try {
    for (const [name, from] of Object.entries(UPSTREAM_PROTOS)) {
      mkdirSync(dirname(join(dir, name)), { recursive: true });
      copyFileSync(resolve(ROOT, from), join(dir, name));
    }
    return (upstream = bufBuild(dir, ["--exclude-source-info"]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------
// Strict linking

function declaredTypes(file: FileDescriptorProto): Set<string> {
  const out = new Set<string>();
  const scope = file.package ? `.${file.package}.` : ".";
  const enums = (es: EnumDescriptorProto[], s: string) => es.forEach((e) => out.add(`${s}${e.name}`));
  const messages = (ms: DescriptorProto[], s: string) => {
    for (const m of ms) {
      out.add(`${s}${m.name}`);
      enums(m.enumType, `${s}${m.name}.`);
      messages(m.nestedType, `${s}${m.name}.`);
    }
  };
  enums(file.enumType, scope);
  messages(file.messageType, scope);
  return out;
}

/** Every fully-qualified name a file declares (types, fields, oneofs, enum values, services, methods, extensions), without the leading dot. */
export function declaredSymbols(file: FileDescriptorProto): Set<string> {
  const out = new Set<string>();
  const scope = file.package ? `${file.package}.` : "";
  const enums = (es: EnumDescriptorProto[], s: string) =>
    es.forEach((e) => {
      out.add(`${s}${e.name}`);
      e.value.forEach((v) => out.add(`${s}${v.name}`));
    });
  const messages = (ms: DescriptorProto[], s: string) => {
    for (const m of ms) {
      const name = `${s}${m.name}`;
      out.add(name);
      m.field.forEach((f) => out.add(`${name}.${f.name}`));
      m.oneofDecl.forEach((o) => out.add(`${name}.${o.name}`));
      m.extension.forEach((x) => out.add(`${name}.${x.name}`));
      enums(m.enumType, `${name}.`);
      messages(m.nestedType, `${name}.`);
    }
  };
  enums(file.enumType, scope);
  messages(file.messageType, scope);
  file.extension.forEach((x) => out.add(`${scope}${x.name}`));
  for (const s of file.service) {
    out.add(`${scope}${s.name}`);
    s.method.forEach((m) => out.add(`${scope}${s.name}.${m.name}`));
  }
  return out;
}

interface Reference {
  where: string;
  ref: string;
  /** The fully-qualified name (no dot) of the scope a relative name is looked up from. */
  scope: string;
}

function references(file: FileDescriptorProto): Reference[] {
  const out: Reference[] = [];
  const pkg = file.package;
  const join = (a: string, b: string) => (a ? `${a}.${b}` : b);
  const fields = (fs: FieldDescriptorProto[], owner: string) => {
    for (const f of fs) {
      if (f.typeName) out.push({ where: `field ${join(owner, f.name)}`, ref: f.typeName, scope: owner });
      if (f.extendee) out.push({ where: `extension ${join(owner, f.name)}`, ref: f.extendee, scope: owner });
    }
  };
  const messages = (ms: DescriptorProto[], scope: string) => {
    for (const m of ms) {
      const name = join(scope, m.name);
      fields(m.field, name);
      fields(m.extension, name);
      messages(m.nestedType, name);
    }
  };
  messages(file.messageType, pkg);
  fields(file.extension, pkg);
  for (const s of file.service) {
    for (const m of s.method) {
      const where = `method ${join(pkg, `${s.name}.${m.name}`)}`;
      out.push({ where: `${where} input`, ref: m.inputType, scope: pkg });
      out.push({ where: `${where} output`, ref: m.outputType, scope: pkg });
    }
  }
  return out;
}

/**
 * Resolves a type reference like protoc/protodesc: a leading dot is fully-qualified; otherwise
 * the name is looked up from the innermost scope outwards. Only `visible` types count.
 */
function resolveReference({ ref, scope }: Reference, visible: Set<string>): string | undefined {
  if (ref.startsWith(".")) return visible.has(ref) ? ref : undefined;
  const parts = scope ? scope.split(".") : [];
  for (let n = parts.length; n >= 0; n--) {
    const candidate = `.${[...parts.slice(0, n), ref].join(".")}`;
    if (visible.has(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Links files the way protodesc.NewFile does for grpcurl: each import must be present, and
 * each type a file uses must be declared by the file itself, a direct import, or a public
 * import of one (transitively through public imports only). Then builds a registry with
 * @bufbuild/protobuf, which checks the rest (names, oneofs, map entries, …). Throws on the
 * first problem.
 */
export function linkStrict(files: ReadonlyMap<string, FileDescriptorProto>): FileRegistry {
  const visibleFrom = (name: string, seen = new Set<string>()): Set<string> => {
    const out = new Set<string>();
    if (seen.has(name)) return out;
    seen.add(name);
    const f = files.get(name)!;
    declaredTypes(f).forEach((t) => out.add(t));
    for (const i of f.publicDependency) visibleFrom(f.dependency[i]!, seen).forEach((t) => out.add(t));
    return out;
  };
  for (const file of files.values()) {
    for (const dep of file.dependency) if (!files.has(dep)) throw new Error(`${file.name} imports ${dep}, which reflection did not provide`);
    const visible = declaredTypes(file);
    for (const dep of file.dependency) visibleFrom(dep).forEach((t) => visible.add(t));
    for (const r of references(file)) {
      if (!resolveReference(r, visible)) {
        throw new Error(`${file.name}: ${r.where} refers to ${r.ref}, which neither the file nor its imports [${file.dependency.join(", ")}] declare`);
      }
    }
  }
  // Dependency order, then one registry; createFileRegistry also throws on a missing import.
  const ordered: FileDescriptorProto[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string, from: string[]) => {
    if (state.get(name) === "done") return;
    if (state.get(name) === "visiting") throw new Error(`import cycle: ${[...from, name].join(" -> ")}`);
    state.set(name, "visiting");
    const f = files.get(name)!;
    f.dependency.forEach((d) => visit(d, [...from, name]));
    state.set(name, "done");
    ordered.push(f);
  };
  [...files.keys()].sort().forEach((n) => visit(n, []));
  return createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
}

// ---------------------------------------------------------------------------------------
// The reflection protocol

export type ReflectionVersion = "v1" | "v1alpha";

export type Query =
  | { case: "listServices"; value: string }
  | { case: "fileByFilename"; value: string }
  | { case: "fileContainingSymbol"; value: string }
  | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
  | { case: "allExtensionNumbersOfType"; value: string };

export interface ReflectionResponse {
  validHost: string;
  originalRequest?: { host: string; messageRequest: Query | { case: undefined } };
  messageResponse:
    | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
    | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
    | { case: "listServicesResponse"; value: { service: { name: string }[] } }
    | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } }
    | { case: undefined };
}

export class ReflectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(`reflection error ${code}: ${message}`);
  }
}

function schemas(version: ReflectionVersion): { request: DescMessage; response: DescMessage } {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, upstreamProtoSet()));
  const request = registry.getMessage(`grpc.reflection.${version}.ServerReflectionRequest`);
  const response = registry.getMessage(`grpc.reflection.${version}.ServerReflectionResponse`);
  if (!request || !response) throw new Error(`no reflection ${version} messages in the upstream protos`);
  return { request, response };
}

/** One ServerReflectionInfo stream; requests are answered in order. */
export class ReflectionStream {
  private readonly client: Client;
  private readonly call: ClientDuplexStream<Uint8Array, ReflectionResponse>;
  private readonly pending: { resolve(r: ReflectionResponse): void; reject(e: Error): void }[] = [];
  private readonly requestSchema: DescMessage;
  private failure: Error | undefined;
  /** How many requests this stream sent. */
  requests = 0;

  constructor(
    address: string,
    readonly version: ReflectionVersion,
    private readonly host = "",
  ) {
    const { request, response } = schemas(version);
    this.requestSchema = request;
    this.client = new Client(address, credentials.createInsecure());
    this.call = this.client.makeBidiStreamRequest(
      `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
      (bytes: Uint8Array) => Buffer.from(bytes),
      (bytes: Buffer) => fromBinary(response, bytes) as unknown as ReflectionResponse,
    );
    this.call.on("data", (r: ReflectionResponse) => this.pending.shift()?.resolve(r));
    this.call.on("error", (e: ServiceError) => {
      this.failure = e;
      this.pending.splice(0).forEach((p) => p.reject(e));
    });
  }

  /** Sends raw bytes as a request (to test malformed input). */
  sendRaw(bytes: Uint8Array): Promise<ReflectionResponse> {
    if (this.failure) return Promise.reject(this.failure);
    this.requests++;
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.call.write(bytes);
    });
  }

  send(query: Query | { case: undefined }): Promise<ReflectionResponse> {
    const init = { host: this.host, messageRequest: query } as unknown as Parameters<typeof create>[1];
    return this.sendRaw(toBinary(this.requestSchema, create(this.requestSchema, init)));
  }

  /** Sends a query and returns the file_descriptor_response's files; throws ReflectionError on an error_response. */
  async files(query: Query): Promise<Uint8Array[]> {
    const r = await this.send(query);
    if (r.messageResponse.case === "errorResponse") throw new ReflectionError(r.messageResponse.value.errorCode, r.messageResponse.value.errorMessage);
    if (r.messageResponse.case !== "fileDescriptorResponse") throw new Error(`expected a file_descriptor_response, got ${r.messageResponse.case}`);
    return r.messageResponse.value.fileDescriptorProto;
  }

  async listServices(): Promise<string[]> {
    const r = await this.send({ case: "listServices", value: "" });
    if (r.messageResponse.case !== "listServicesResponse") throw new Error(`expected a list_services_response, got ${r.messageResponse.case}`);
    return r.messageResponse.value.service.map((s) => s.name);
  }

  close(): void {
    this.call.end();
    this.client.close();
  }
}

/**
 * grpcurl's descriptor source over reflection: resolves symbols and files, follows every
 * declared import it has not got yet with file_by_filename, and links strictly.
 */
export class StrictReflectionResolver {
  readonly files = new Map<string, FileDescriptorProto>();
  private readonly raw = new Map<string, Buffer>();

  constructor(readonly stream: ReflectionStream) {}

  private add(bytes: Uint8Array): FileDescriptorProto {
    const file = fromBinary(FileDescriptorProtoSchema, bytes);
    const known = this.raw.get(file.name);
    if (known && !known.equals(Buffer.from(bytes))) throw new Error(`reflection sent two different versions of ${file.name}`);
    if (!known) {
      this.files.set(file.name, file);
      this.raw.set(file.name, Buffer.from(bytes));
    }
    return this.files.get(file.name)!;
  }

  private async fetchImports(file: FileDescriptorProto, seen = new Set<string>()): Promise<void> {
    if (seen.has(file.name)) return;
    seen.add(file.name);
    for (const dep of file.dependency) {
      const known = this.files.get(dep);
      await this.fetchImports(known ?? (await this.fileByFilename(dep)), seen);
    }
  }

  async fileContainingSymbol(symbol: string): Promise<FileDescriptorProto> {
    const [first, ...rest] = await this.stream.files({ case: "fileContainingSymbol", value: symbol });
    if (!first) throw new Error(`no file in the answer for symbol ${symbol}`);
    const file = this.add(first);
    rest.forEach((b) => this.add(b));
    if (!declaredSymbols(file).has(symbol)) throw new Error(`reflection answered ${file.name} for ${symbol}, which it does not declare`);
    await this.fetchImports(file);
    return file;
  }

  async fileByFilename(name: string): Promise<FileDescriptorProto> {
    const [first, ...rest] = await this.stream.files({ case: "fileByFilename", value: name });
    if (!first) throw new Error(`no file in the answer for ${name}`);
    const file = this.add(first);
    rest.forEach((b) => this.add(b));
    if (file.name !== name) throw new Error(`asked for ${name}, reflection answered ${file.name} first`);
    await this.fetchImports(file);
    return file;
  }

  /** Links everything fetched so far (see linkStrict). */
  link(): FileRegistry {
    return linkStrict(this.files);
  }
}

/** grpcurl `describe` of every listed service: list, resolve each, link. */
export async function describeAll(address: string, version: ReflectionVersion): Promise<{ services: string[]; registry: FileRegistry; resolver: StrictReflectionResolver }> {
  const stream = new ReflectionStream(address, version);
  try {
    const resolver = new StrictReflectionResolver(stream);
    const services = await stream.listServices();
    for (const s of services) await resolver.fileContainingSymbol(s);
    const registry = resolver.link();
    for (const s of services) if (!registry.getService(s)) throw new Error(`service ${s} is listed but not described`);
    return { services, registry, resolver };
  } finally {
    stream.close();
  }
}

/**
 * Strict request decoding. grpc-js answers INTERNAL when a request deserializer throws
 * (truncated bytes, an unknown wire type, an int64 beyond 2^53), and the generated decoders
 * quietly replace invalid UTF-8 with U+FFFD, so two different byte strings would be stored
 * as the same name. Every request of our services is checked against the contract's
 * descriptor set (`npm run generate`) before it is decoded:
 * - every string field, at any depth, must be valid UTF-8 (as proto3 requires);
 * - every google.protobuf.Timestamp, at any depth, must be a valid timestamp (seconds from
 *   0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z, nanos from 0 to 999,999,999): the
 *   generated code turns it into a Date, which would hide out-of-range nanos;
 * - bytes that are not a protobuf message at all are refused.
 * The handler then receives a RequestDecodeFailure instead of a request, which `unary`
 * answers with INVALID_ARGUMENT naming the field, like any other bad field.
 */
import { isUtf8 } from "node:buffer";
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { type DescriptorProto, FieldDescriptorProto_Label, FieldDescriptorProto_Type, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";

/** What the handler receives instead of a request that could not be decoded. */
export class RequestDecodeFailure {
  constructor(
    readonly field: string,
    readonly description: string,
  ) {}
}

/** Services whose requests are checked: ours (health and reflection keep their own decoding). */
const OWN_PACKAGE_PREFIX = "/pokerworks.identity.";
const DESCRIPTOR_SET_CANDIDATES = [resolve(__dirname, "../generated/descriptors.binpb"), resolve(__dirname, "../../../src/generated/descriptors.binpb")];
const TIMESTAMP = ".google.protobuf.Timestamp";
const MIN_SECONDS = -62_135_596_800n; // 0001-01-01T00:00:00Z
const MAX_SECONDS = 253_402_300_799n; // 9999-12-31T23:59:59Z
const MAX_DEPTH = 32;

interface FieldInfo {
  name: string;
  repeated: boolean;
  kind: "string" | "message";
  typeName: string;
}

interface Schema {
  /** Message full name (".pkg.Msg") → its string and message fields by number. */
  messages: Map<string, Map<number, FieldInfo>>;
  /** Method path → input message full name. */
  inputs: Map<string, string>;
}

let schema: Schema | undefined;

function loadSchema(): Schema {
  if (schema) return schema;
  schema = { messages: new Map(), inputs: new Map() };
  const path = DESCRIPTOR_SET_CANDIDATES.find((p) => existsSync(p));
  if (!path) return schema;
  const files = fromBinary(FileDescriptorSetSchema, readFileSync(path)).file;
  const addMessage = (scope: string, m: DescriptorProto) => {
    const name = `${scope}.${m.name}`;
    const fields = new Map<number, FieldInfo>();
    for (const f of m.field) {
      const kind = f.type === FieldDescriptorProto_Type.STRING ? "string" : f.type === FieldDescriptorProto_Type.MESSAGE ? "message" : undefined;
      if (kind) fields.set(f.number, { name: f.name, repeated: f.label === FieldDescriptorProto_Label.REPEATED, kind, typeName: f.typeName });
    }
    schema!.messages.set(name, fields);
    for (const nested of m.nestedType) addMessage(name, nested);
  };
  for (const file of files) for (const m of file.messageType) addMessage(`.${file.package}`, m);
  for (const file of files)
    for (const service of file.service) for (const method of service.method) schema.inputs.set(`/${file.package}.${service.name}/${method.name}`, method.inputType);
  return schema;
}

function checkTimestamp(bytes: Uint8Array, field: string): RequestDecodeFailure | undefined {
  const reader = new BinaryReader(bytes);
  let seconds = 0n;
  let nanos = 0;
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no === 1 && wireType === WireType.Varint) seconds = BigInt(reader.int64());
    else if (no === 2 && wireType === WireType.Varint) nanos = reader.int32();
    else reader.skip(wireType, no);
  }
  if (seconds < MIN_SECONDS || seconds > MAX_SECONDS || nanos < 0 || nanos > 999_999_999)
    return new RequestDecodeFailure(field, `${field} must be a valid timestamp: seconds from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z and nanos from 0 to 999999999`);
  return undefined;
}

/** The first string or timestamp field of `bytes` (a `typeName` message) that is not valid; throws when the bytes are not a message. */
function invalidField(s: Schema, bytes: Uint8Array, typeName: string, path: string, depth: number): RequestDecodeFailure | undefined {
  const fields = s.messages.get(typeName);
  if (!fields || depth > MAX_DEPTH) return undefined;
  const reader = new BinaryReader(bytes);
  const seen = new Map<number, number>();
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    const field = fields.get(no);
    if (!field || wireType !== WireType.LengthDelimited) {
      reader.skip(wireType, no);
      continue;
    }
    const index = seen.get(no) ?? 0;
    seen.set(no, index + 1);
    const name = `${path}${field.name}${field.repeated ? `[${index}]` : ""}`;
    const value = reader.bytes();
    if (field.kind === "string") {
      if (!isUtf8(value)) return new RequestDecodeFailure(name, `${name} must be valid UTF-8`);
    } else {
      const bad = field.typeName === TIMESTAMP ? checkTimestamp(value, name) : invalidField(s, value, field.typeName, `${name}.`, depth + 1);
      if (bad) return bad;
    }
  }
  return undefined;
}

export function strictDeserializer<T>(path: string, deserialize: (bytes: Buffer) => T): (bytes: Buffer) => T | RequestDecodeFailure {
  const s = loadSchema();
  const input = s.inputs.get(path);
  return (bytes) => {
    try {
      const bad = input === undefined ? undefined : invalidField(s, bytes, input, "", 0);
      return bad ?? deserialize(bytes);
    } catch (err) {
      const detail = err instanceof Error ? err.message.slice(0, 100) : "";
      return new RequestDecodeFailure("request", `the request is not a valid protobuf message for this method${detail ? ` (${detail})` : ""}`);
    }
  };
}

/** The service definition with every request decoded strictly (only for our own services). */
export function withStrictDecoding<S extends ServiceDefinition>(service: S): S {
  const out: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service) as [string, MethodDefinition<unknown, unknown>][])
    out[name] = method.path.startsWith(OWN_PACKAGE_PREFIX) ? { ...method, requestDeserialize: strictDeserializer(method.path, method.requestDeserialize) } : method;
  return out as S;
}

/**
 * Raw gRPC for the reliability suite: requests built byte by byte with @bufbuild/protobuf's
 * BinaryWriter (so a string field can carry invalid UTF-8, a field can have the wrong wire
 * type, unknown fields can be appended) and sent with a generic grpc-js client whose
 * serializers are the identity, so the bytes reach the server exactly as built.
 */
import { type ChannelOptions, Client, credentials, Metadata, status as Code, type ServiceError } from "@grpc/grpc-js";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { decodeStatus } from "./harness";

export { Code };

const SA = "/pokerworks.identity.v1.ServiceAccountService/";
const TOK = "/pokerworks.identity.v1.TokenService/";
export const PATHS = {
  createServiceAccount: `${SA}CreateServiceAccount`,
  getServiceAccount: `${SA}GetServiceAccount`,
  listServiceAccounts: `${SA}ListServiceAccounts`,
  updateServiceAccount: `${SA}UpdateServiceAccount`,
  revokeServiceAccount: `${SA}RevokeServiceAccount`,
  createToken: `${TOK}CreateToken`,
  getToken: `${TOK}GetToken`,
  listTokens: `${TOK}ListTokens`,
  revokeToken: `${TOK}RevokeToken`,
  listAuditEvents: "/pokerworks.identity.v1.AuditService/ListAuditEvents",
  authorize: "/pokerworks.identity.v1.AuthorizationService/Authorize",
} as const;
export type RpcName = keyof typeof PATHS;

/** One field on the wire. `raw` bytes are appended verbatim (bad wire types, truncated data). */
export type WireField =
  | { no: number; kind: "varint"; value: bigint }
  | { no: number; kind: "len"; value: Uint8Array }
  | { no: number; kind: "fixed32"; value: number }
  | { no: number; kind: "fixed64"; value: bigint }
  | { kind: "raw"; bytes: Uint8Array };

const utf8 = new TextEncoder();

export function encodeFields(fields: readonly WireField[]): Uint8Array {
  const w = new BinaryWriter();
  for (const f of fields) {
    switch (f.kind) {
      case "varint":
        w.tag(f.no, WireType.Varint).uint64(BigInt.asUintN(64, f.value));
        break;
      case "len":
        w.tag(f.no, WireType.LengthDelimited).bytes(f.value);
        break;
      case "fixed32":
        w.tag(f.no, WireType.Bit32).fixed32(f.value >>> 0);
        break;
      case "fixed64":
        w.tag(f.no, WireType.Bit64).fixed64(BigInt.asUintN(64, f.value));
        break;
      case "raw":
        w.raw(f.bytes);
        break;
    }
  }
  return w.finish();
}

/** A string field from text (always valid UTF-8). */
export const str = (no: number, s: string): WireField => ({ no, kind: "len", value: utf8.encode(s) });
/** A length-delimited field from arbitrary bytes (invalid UTF-8 when used for a string). */
export const bytes = (no: number, b: Uint8Array): WireField => ({ no, kind: "len", value: b });
export const varint = (no: number, v: number | bigint): WireField => ({ no, kind: "varint", value: BigInt(v) });
export const msg = (no: number, fields: readonly WireField[]): WireField => ({ no, kind: "len", value: encodeFields(fields) });

/** A google.protobuf.Timestamp with raw seconds and nanos (may be out of range). */
export const timestamp = (no: number, seconds: bigint, nanos: number): WireField =>
  msg(no, [...(seconds !== 0n ? [varint(1, seconds)] : []), ...(nanos !== 0 ? [varint(2, BigInt(nanos))] : [])]);
export const userActorField = (no: number, id = "user_fuzz"): WireField => msg(no, [str(1, id)]);

export interface RawResult {
  code: number;
  details: string;
  metadata: Metadata;
  response?: Buffer;
  ms: number;
}

/** A grpc-js client that sends and receives raw bytes on any path. */
export class RawClient {
  readonly client: Client;
  constructor(address: string, options: ChannelOptions = {}) {
    this.client = new Client(address, credentials.createInsecure(), { "grpc.max_receive_message_length": 64 * 1024 * 1024, ...options });
  }

  call(path: string, body: Uint8Array, opts: { deadlineMs?: number; metadata?: Metadata } = {}): Promise<RawResult> {
    const started = performance.now();
    return new Promise((resolve) => {
      this.client.makeUnaryRequest<Buffer, Buffer>(
        path,
        (b) => b,
        (b) => b,
        Buffer.from(body.buffer, body.byteOffset, body.byteLength),
        opts.metadata ?? new Metadata(),
        { deadline: Date.now() + (opts.deadlineMs ?? 10_000) },
        (err: ServiceError | null, res?: Buffer) => {
          const ms = performance.now() - started;
          if (err) resolve({ code: err.code, details: err.details, metadata: err.metadata ?? new Metadata(), ms });
          else resolve({ code: Code.OK, details: "", metadata: new Metadata(), response: res, ms });
        },
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

export const codeName = (code: number) => Code[code] ?? `code ${code}`;

/** Codes a well-behaved service may answer to a bad or hostile request. */
export const PROPER_CODES = new Set<number>([
  Code.OK,
  Code.INVALID_ARGUMENT,
  Code.NOT_FOUND,
  Code.ALREADY_EXISTS,
  Code.FAILED_PRECONDITION,
  Code.PERMISSION_DENIED,
  Code.RESOURCE_EXHAUSTED,
]);

/**
 * Why `r` is not a proper answer, or undefined when it is: a code from PROPER_CODES (never
 * INTERNAL, UNKNOWN, UNAVAILABLE, ...) and, for an error, a google.rpc.Status in the
 * identity domain whose code matches, with a message, and a BadRequest for INVALID_ARGUMENT.
 */
export function improper(r: RawResult): string | undefined {
  if (!PROPER_CODES.has(r.code)) return `${codeName(r.code)}: ${r.details}`;
  if (r.code === Code.OK) return r.response ? undefined : "OK without a response message";
  const d = decodeStatus(r.metadata);
  if (d.status === undefined) return `${codeName(r.code)} without google.rpc.Status details: ${r.details}`;
  if (d.status.code !== r.code) return `status details say code ${d.status.code}, the call ${r.code}`;
  if (d.domain !== "identity.pokerworks.com" || !d.reason) return `${codeName(r.code)} without an ErrorInfo in our domain: ${r.details}`;
  if (r.details.length === 0) return `${codeName(r.code)} without a message`;
  if (r.code === Code.INVALID_ARGUMENT && d.fieldViolations.length === 0) return `INVALID_ARGUMENT without field violations: ${r.details}`;
  return undefined;
}

/** The ErrorInfo reason of an error result. */
export const reasonOf = (r: RawResult) => decodeStatus(r.metadata).reason;
export const fieldsOf = (r: RawResult) => decodeStatus(r.metadata).fieldViolations.map((v) => v.field);

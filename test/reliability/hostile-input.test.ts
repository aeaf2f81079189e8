/**
 * Hostile input over every RPC of the contract (read from the descriptor set, so a new RPC is
 * covered the day it is added): property-based requests built byte by byte — random and
 * boundary strings, invalid UTF-8, control characters, unknown fields and wire types, unknown
 * enum values, truncated messages, out-of-range and far-future timestamps, tampered page
 * tokens, tokens with a valid prefix and a bad checksum — plus field-by-field cases, huge
 * repeated fields and oversized messages.
 *
 * Every answer must be a proper status (never INTERNAL, UNKNOWN or a hang; an error carries a
 * google.rpc.Status in our domain, small enough for any client's header limit), a refused
 * request must leave every table exactly as it was (row counts and a digest of every row),
 * and the server — a separate OS process — must still be up and answering at the end.
 *
 * RELIABILITY_FUZZ_RUNS (default 60) sets the random requests per RPC; RELIABILITY_FUZZ_SEED
 * replays a run.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthorizeRequest, AuthorizeResponse } from "../../src/generated/pokerworks/identity/v1/authorization_service";
import { HUMAN_ONLY_ACTIONS, LAUNCH_SCOPES } from "../../src/shared/scopes";
import { checksum, randomBase62, wellFormedToken } from "../support/authz";
import { call, connect, createTestDatabase, REDIS_URL, type TestDatabase, testRedisPrefix, userActor, type Clients } from "../support/harness";
import { startServiceProcess, type ServiceProcess } from "../support/process";
import { DbWatch, type Snapshot } from "../support/reliability-db";
import { type Field, loadContract, type Method } from "../support/reliability-schema";
import { bytes as lenField, Code, codeName, encodeFields, fieldsOf, improper, msg, RawClient, type RawResult, reasonOf, str, varint, type WireField } from "../support/reliability-wire";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

const RUNS = Number(process.env.RELIABILITY_FUZZ_RUNS ?? 60);
const SEED = process.env.RELIABILITY_FUZZ_SEED ? Number(process.env.RELIABILITY_FUZZ_SEED) : undefined;
const MAX_RECEIVE = 1024 * 1024; // GRPC_MAX_RECEIVE_MESSAGE_BYTES default
/** The smallest header-list limit among common gRPC stacks (grpc-java: 8 KiB). */
const MAX_TRAILER_BYTES = 8 * 1024;

const contract = loadContract();
const TIMESTAMP = ".google.protobuf.Timestamp";
const DURATION = ".google.protobuf.Duration";
const enc = new TextEncoder();
const utf8 = (s: string) => enc.encode(s);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

let db: TestDatabase;
let proc: ServiceProcess;
let clients: Clients;
let raw: RawClient;
let watch: DbWatch;
let current: Snapshot;
const ORG = "org_fuzz";
const OTHER_ORG = "org_other";
const pool: Record<string, string[]> = {};
const secrets = new Set<string>();
const requests = { total: 0, byCode: new Map<string, number>() };

function tally(r: RawResult): void {
  requests.total++;
  requests.byCode.set(codeName(r.code), (requests.byCode.get(codeName(r.code)) ?? 0) + 1);
}

/** Bytes of the HTTP/2 trailers a status needs (grpc-message is percent-encoded, -bin values base64). */
function trailerBytes(r: RawResult): number {
  let n = Buffer.byteLength(encodeURI(r.details));
  for (const [k, v] of Object.entries(r.metadata.getMap())) n += k.length + (Buffer.isBuffer(v) ? Math.ceil((v.length * 4) / 3) : String(v).length);
  return n;
}

/** Calls, then checks the answer is proper and that nothing was written unless the call succeeded and may write. */
async function send(m: Method, body: Uint8Array, note = ""): Promise<RawResult> {
  const before = current;
  const r = await raw.call(m.path, body, { deadlineMs: 15_000 });
  tally(r);
  const where = `${m.name}${note ? ` (${note})` : ""}, request ${body.length > 300 ? `${hex(body.subarray(0, 300))}… (${body.length} bytes)` : hex(body)}`;
  const problem = improper(r);
  if (problem) throw new Error(`${where}: improper answer ${problem}`);
  if (r.code !== Code.OK && trailerBytes(r) > MAX_TRAILER_BYTES) throw new Error(`${where}: status trailers of ${trailerBytes(r)} bytes`);
  current = await watch.snapshot();
  if (r.code !== Code.OK || m.readOnly) {
    if (JSON.stringify(current) !== JSON.stringify(before))
      throw new Error(`${where}: answered ${codeName(r.code)} ${r.details} but the tables changed: ${JSON.stringify(before)} -> ${JSON.stringify(current)}`);
  }
  if (m.name === "Authorize" && r.code === Code.OK && AuthorizeResponse.decode(r.response!).allowed) {
    const token = AuthorizeRequest.decode(body).token;
    if (!secrets.has(token)) throw new Error(`${where}: allowed a token that was never issued`);
  }
  return r;
}

// ---------------------------------------------------------------------------------------
// Values

const BOUNDARY_STRINGS = [
  "", " ", "\t", "\n", "a", "0", "-1", "*", "null", "undefined", "NaN", "true",
  "a".repeat(63), "a".repeat(64), "a".repeat(65), "a".repeat(100), "a".repeat(101), "a".repeat(128), "a".repeat(129), "a".repeat(500), "a".repeat(501), "a".repeat(5000),
  "𝕏".repeat(100), "𝕏".repeat(101), "é".repeat(100), "👩‍👩‍👧‍👦", "\u0000", "a\u0000b", "\u202e", "\ufeff", "\u2028", "\u200b", "\u00a0x\u00a0", "\ud7ff", "\uffff", "\u{10ffff}",
  "' OR '1'='1", "'; drop table tokens; --", "%00", "%s%n", "${jndi:ldap://x}", "../../etc/passwd", "<script>", "\\", "\"",
  "pw_mgmt_", "pw_test_abc", "pw_live_abc", "org:read", "billing:write", "test", "live", "name", "description",
];
const INVALID_UTF8 = [
  [0xff], [0xfe, 0xff], [0x80], [0xc0, 0x80], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0x61, 0x62, 0xff, 0x63], [0x6f, 0x72, 0x67, 0xc0, 0xaf],
].map((a) => Uint8Array.from(a));

const controlText = fc
  .array(fc.oneof(fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0x7f, max: 0x9f }), fc.constantFrom(0x2028, 0x2029, 0x202e, 0xfeff, 0x200b), fc.integer({ min: 0x20, max: 0x7e })), { maxLength: 40 })
  .map((cps) => String.fromCodePoint(...cps));

const hostileString: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.string({ unit: "binary", maxLength: 80 }).map(utf8),
  fc.string({ unit: "grapheme", maxLength: 40 }).map(utf8),
  fc.constantFrom(...BOUNDARY_STRINGS).map(utf8),
  controlText.map(utf8),
  fc.constantFrom(...INVALID_UTF8),
  fc.uint8Array({ maxLength: 48 }),
);

function mutated(s: string): fc.Arbitrary<string> {
  return fc.oneof(
    fc.nat({ max: s.length }).map((n) => s.slice(0, n)),
    fc.tuple(fc.nat({ max: Math.max(0, s.length - 1) }), fc.string({ minLength: 1, maxLength: 1, unit: "binary" })).map(([i, c]) => s.slice(0, i) + c + s.slice(i + 1)),
    fc.string({ minLength: 1, maxLength: 3 }).map((x) => s + x),
    fc.constantFrom(s.toUpperCase(), s.toLowerCase(), ` ${s}`, `${s}\u0000`, `${s}\n`, s.normalize("NFD")),
  );
}

/** Values that get past the first checks, by field name, so requests reach deep into each RPC. */
function plausible(field: string): string[] {
  return pool[field] ?? pool[field.replace(/s$/, "")] ?? [];
}

function stringValue(field: string): fc.Arbitrary<Uint8Array> {
  const values = plausible(field);
  if (values.length === 0) return hostileString;
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...values).map(utf8) },
    { weight: 2, arbitrary: fc.constantFrom(...values).chain(mutated).map(utf8) },
    { weight: 3, arbitrary: hostileString },
  );
}

const nowSeconds = BigInt(Math.floor(Date.now() / 1000));
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const secondsValue = fc.oneof(
  fc.constantFrom(0n, -1n, nowSeconds - 1n, nowSeconds + 2n, nowSeconds + 3600n, nowSeconds + 86_400n * 400n, 253_402_300_799n, 253_402_300_800n, -62_135_596_800n, -62_135_596_801n, 2n ** 53n, I64_MAX, I64_MIN),
  fc.bigInt({ min: nowSeconds - 10n ** 8n, max: nowSeconds + 10n ** 9n }),
  fc.bigInt({ min: I64_MIN, max: I64_MAX }),
);
const nanosValue = fc.oneof(fc.constantFrom(0, 1, 999_999_999, 1_000_000_000, -1, -(2 ** 31), 2 ** 31 - 1), fc.integer({ min: 0, max: 999_999_999 }));
const timeValue: fc.Arbitrary<WireField[]> = fc
  .tuple(secondsValue, nanosValue)
  .map(([s, n]) => [...(s !== 0n ? [varint(1, s)] : []), ...(n !== 0 ? [varint(2, BigInt(n))] : [])]);

function varintValue(f: Field): fc.Arbitrary<bigint> {
  if (f.kind === "bool") return fc.constantFrom(0n, 1n, 2n, 2n ** 64n - 1n);
  if (f.kind === "enum") {
    const known = (contract.enums.get(f.typeName) ?? [0]).map(BigInt);
    return fc.oneof(fc.constantFrom(...known), fc.constantFrom(99n, -1n, 2n ** 31n - 1n, -(2n ** 31n)), fc.bigInt({ min: -(2n ** 31n), max: 2n ** 31n - 1n }));
  }
  return fc.oneof(
    fc.constantFrom(0n, 1n, 2n, 50n, 200n, 201n, 1000n, -1n, 2n ** 31n - 1n, -(2n ** 31n), 2n ** 32n, I64_MAX, I64_MIN, 2n ** 64n - 1n),
    fc.bigInt({ min: I64_MIN, max: 2n ** 64n - 1n }),
  );
}

function fieldValue(f: Field, depth: number): fc.Arbitrary<WireField> {
  switch (f.kind) {
    case "string":
      return stringValue(f.name).map((b) => lenField(f.number, b));
    case "bytes":
      return fc.uint8Array({ maxLength: 64 }).map((b) => lenField(f.number, b));
    case "fixed32":
      return fc.integer().map((v) => ({ no: f.number, kind: "fixed32" as const, value: v }));
    case "fixed64":
      return fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((v) => ({ no: f.number, kind: "fixed64" as const, value: v }));
    case "message":
      return messageValue(f.typeName, depth + 1).map((fields) => msg(f.number, fields));
    default:
      return varintValue(f).map((v) => varint(f.number, v));
  }
}

function messageValue(typeName: string, depth: number): fc.Arbitrary<WireField[]> {
  if (typeName === TIMESTAMP || typeName === DURATION) return timeValue;
  if (typeName === ".google.protobuf.FieldMask")
    return fc.array(fc.oneof(fc.constantFrom("name", "description", "*", "").map(utf8), hostileString), { maxLength: 4 }).map((paths) => paths.map((p) => lenField(1, p)));
  const fields = contract.messages.get(typeName) ?? [];
  if (depth > 3 || fields.length === 0) return fc.constant([]);
  return fc
    .tuple(...fields.map((f) => (f.repeated ? fc.array(fieldValue(f, depth), { maxLength: 6 }) : fc.option(fieldValue(f, depth).map((v) => [v]), { freq: 5, nil: [] as WireField[] }))))
    .map((parts) => parts.flat());
}

function tag(no: number, wireType: number): Uint8Array {
  return new BinaryWriter().uint32(((no << 3) | wireType) >>> 0).finish();
}

/** Things no well-formed request of this contract holds. */
const extraField: fc.Arbitrary<WireField> = fc.oneof(
  fc.tuple(fc.integer({ min: 100, max: 536_870_911 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })).map(([no, v]) => varint(no, v)),
  fc.tuple(fc.integer({ min: 100, max: 536_870_911 }), fc.uint8Array({ maxLength: 32 })).map(([no, b]) => lenField(no, b)),
  fc.tuple(fc.integer({ min: 100, max: 1000 }), fc.integer()).map(([no, v]) => ({ no, kind: "fixed32" as const, value: v })),
  fc.integer({ min: 1, max: 12 }).map((no) => varint(no, 7n)), // a known field with the wrong wire type
  fc.integer({ min: 1, max: 12 }).map((no) => ({ kind: "raw" as const, bytes: Buffer.concat([tag(no, 3), tag(no, 4)]) })), // an empty group
  fc.tuple(fc.integer({ min: 1, max: 50 }), fc.constantFrom(6, 7)).map(([no, wt]) => ({ kind: "raw" as const, bytes: tag(no, wt) })), // no such wire type
);

/** A plausible request of `m` with one or two top-level fields replaced by arbitrary values (reaches deep into the RPC). */
function nearlyValid(m: Method, replaced: number): fc.Arbitrary<Uint8Array> {
  const fields = contract.messages.get(m.input) ?? [];
  if (fields.length === 0) return fc.constant(new Uint8Array());
  return fc
    .tuple(...Array.from({ length: replaced }, () => fc.constantFrom(...fields).chain((f) => fc.tuple(fc.constant(f), f.repeated ? fc.array(fieldValue(f, 0), { maxLength: 6 }) : fieldValue(f, 0).map((v) => [v])))))
    .map((swaps) => encodeFields(baseRequest(m, (f) => swaps.find(([g]) => g === f)?.[1])));
}

function requestValue(m: Method): fc.Arbitrary<Uint8Array> {
  const built = fc
    .tuple(messageValue(m.input, 0), fc.array(extraField, { maxLength: 2 }), fc.boolean())
    .map(([fields, extras, extrasFirst]) => encodeFields(extrasFirst ? [...extras, ...fields] : [...fields, ...extras]));
  return fc.oneof(
    { weight: 5, arbitrary: nearlyValid(m, 1) },
    { weight: 2, arbitrary: nearlyValid(m, 2) },
    { weight: 4, arbitrary: fc.tuple(messageValue(m.input, 0)).map(([fields]) => encodeFields(fields)) },
    { weight: 3, arbitrary: built },
    { weight: 1, arbitrary: fc.tuple(built, fc.nat({ max: 6 })).map(([b, k]) => b.subarray(0, Math.max(0, b.length - 1 - k))) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  );
}

/** A plausible request of `m`: the first plausible value of every top-level field. */
function baseRequest(m: Method, override: (f: Field) => WireField[] | undefined = () => undefined): WireField[] {
  const out: WireField[] = [];
  for (const f of contract.messages.get(m.input) ?? []) {
    const o = override(f);
    if (o) {
      out.push(...o);
      continue;
    }
    if (f.kind === "string") {
      const v = plausible(f.name)[0];
      if (v !== undefined) out.push(str(f.number, v));
    } else if (f.kind === "message") {
      if (f.typeName === TIMESTAMP) out.push(msg(f.number, [varint(1, nowSeconds + 86_400n)]));
      else if (f.typeName === DURATION) out.push(msg(f.number, [varint(1, 3600n)]));
      else if (f.typeName === ".google.protobuf.FieldMask") out.push(msg(f.number, [str(1, "description")]));
      else if (f.typeName.endsWith(".Actor")) out.push(msg(f.number, [str(1, "user_fuzz")]));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Fixtures

beforeAll(async () => {
  db = await createTestDatabase();
  proc = await startServiceProcess({
    DATABASE_URL: db.url,
    REDIS_URL,
    REDIS_KEY_PREFIX: testRedisPrefix(),
    LISTEN_ADDRESS: "127.0.0.1:0",
    LAST_USED_FLUSH_INTERVAL_MS: "60000",
    LOG_LEVEL: "info",
  });
  clients = connect(proc.address);
  raw = new RawClient(proc.address);
  watch = await DbWatch.open(db.url);

  const { serviceAccounts: s, tokens: t, audit: a } = clients;
  const sa = async (org: string, name: string) => (await call(s.createServiceAccount.bind(s), { organizationId: org, name, description: "", actor: userActor() })).serviceAccount!.id;
  const token = async (org: string, saId: string, scopes: string[], projectIds: string[] = []) => {
    const res = await call(t.createToken.bind(t), { organizationId: org, serviceAccountId: saId, label: "fuzz", scopes, projectIds, environments: [], actor: userActor() });
    secrets.add(res.secret);
    return res;
  };
  const sa1 = await sa(ORG, "fuzz-a");
  const sa2 = await sa(ORG, "fuzz-b");
  const sa3 = await sa(OTHER_ORG, "fuzz-other");
  const t1 = await token(ORG, sa1, ["projects:read", "org:read"]);
  const t2 = await token(ORG, sa1, ["api_keys:create"], ["proj_1"]);
  const t3 = await token(ORG, sa2, ["audit_log:read"]);
  const t4 = await token(OTHER_ORG, sa3, ["org:read"]);
  const pageTokens = [
    (await call(s.listServiceAccounts.bind(s), { organizationId: ORG, pageSize: 1, pageToken: "", includeRevoked: false })).nextPageToken,
    (await call(t.listTokens.bind(t), { organizationId: ORG, serviceAccountId: "", pageSize: 1, pageToken: "", includeInactive: false })).nextPageToken,
    (await call(a.listAuditEvents.bind(a), { organizationId: ORG, projectId: "", pageSize: 1, pageToken: "" })).nextPageToken,
  ];
  expect(pageTokens.every((p) => p.length > 0)).toBe(true);
  const real = [t1.secret, t2.secret, t3.secret, t4.secret];
  const badChecksum = real.map((x) => x.slice(0, -6) + (x.slice(-6) === "000000" ? "000001" : "000000"));
  Object.assign(pool, {
    organization_id: [ORG, OTHER_ORG],
    service_account_id: [sa1, sa2, sa3],
    token_id: [t1.token!.id, t2.token!.id, t3.token!.id, t4.token!.id],
    token: [...real, ...badChecksum, real[0]!.slice(0, 20), wellFormedToken(), `pw_test_${randomBase62(32)}`, `pw_live_${randomBase62(32)}`],
    scope: [...LAUNCH_SCOPES, ...HUMAN_ONLY_ACTIONS],
    environment: ["test", "live"],
    project_id: ["proj_1", "proj-2"],
    page_token: pageTokens,
    user_id: ["user_fuzz"],
    management_token: [t1.token!.id],
    name: ["fuzz-new", "fuzz-a"],
    label: ["deploy"],
    description: ["made by the fuzzer"],
    source: ["github"],
    url: ["https://github.com/example/repo/blob/main/.env"],
    path: ["name", "description"],
  });
  current = await watch.snapshot();
}, 90_000);

afterAll(async () => {
  console.log(`hostile input: ${requests.total} requests over ${contract.methods.length} RPCs; answers: ${JSON.stringify(Object.fromEntries(requests.byCode))}`);
  clients?.close();
  raw?.close();
  await watch?.close();
  if (proc && proc.proc.exitCode === null) await proc.kill("SIGTERM");
  await db?.drop();
});

// ---------------------------------------------------------------------------------------

describe("hostile input", () => {
  it("covers every RPC the server serves", async () => {
    expect(contract.methods.length).toBeGreaterThanOrEqual(11);
    for (const m of contract.methods) {
      const r = await raw.call(m.path, new Uint8Array());
      tally(r);
      expect(r.code, `${m.path} ${r.details}`).not.toBe(Code.UNIMPLEMENTED);
      expect(improper(r), m.path).toBeUndefined();
    }
  });

  for (const m of contract.methods) {
    it(`${m.service}.${m.name}: random and boundary requests always get a proper status and refused ones write nothing`, async () => {
      await fc.assert(
        fc.asyncProperty(requestValue(m), async (body) => {
          await send(m, body);
        }),
        { numRuns: RUNS, seed: SEED, verbose: 1 },
      );
    }, 120_000);
  }

  for (const m of contract.methods) {
    it(`${m.service}.${m.name}: invalid UTF-8, bad timestamps, unknown enum values, bad wire types, truncation — field by field`, async () => {
      const fields = contract.messages.get(m.input) ?? [];
      // Invalid UTF-8 in each string field (and in the strings of each message field) is INVALID_ARGUMENT naming that field.
      for (const f of fields) {
        if (f.kind === "string") {
          for (const bad of [INVALID_UTF8[0]!, INVALID_UTF8[6]!, INVALID_UTF8[11]!]) {
            const r = await send(m, encodeFields(baseRequest(m, (g) => (g === f ? [lenField(f.number, bad)] : undefined))), `invalid UTF-8 in ${f.name}`);
            expect(codeName(r.code), r.details).toBe("INVALID_ARGUMENT");
            expect(fieldsOf(r)).toContain(f.repeated ? `${f.name}[0]` : f.name);
          }
        }
        if (f.kind === "message" && f.typeName.endsWith(".Actor")) {
          const r = await send(m, encodeFields(baseRequest(m, (g) => (g === f ? [msg(f.number, [lenField(1, INVALID_UTF8[0]!)])] : undefined))), `invalid UTF-8 in ${f.name}.user_id`);
          expect(codeName(r.code), r.details).toBe("INVALID_ARGUMENT");
          expect(fieldsOf(r)).toContain(`${f.name}.user_id`);
        }
        if (f.kind === "message" && f.typeName === TIMESTAMP) {
          const invalid: [bigint, number][] = [
            [253_402_300_800n, 0], // 10000-01-01
            [nowSeconds + 3600n, -1], // negative nanos
            [nowSeconds + 3600n, 1_000_000_000],
            [-62_135_596_801n, 0], // before year 1
            [I64_MAX, 0],
            [I64_MIN, 999_999_999],
          ];
          for (const [s, n] of invalid) {
            const r = await send(m, encodeFields(baseRequest(m, (g) => (g === f ? [msg(f.number, [varint(1, s), varint(2, BigInt(n))])] : undefined))), `${f.name} = ${s}s ${n}ns`);
            expect(codeName(r.code), r.details).toBe("INVALID_ARGUMENT");
            expect(fieldsOf(r)).toContain(f.name);
          }
          // Expired, about to expire and the last valid instant: proper answers (tested by send).
          for (const [s, n] of [[nowSeconds - 1n, 0], [nowSeconds - 86_400n * 365n, 0], [nowSeconds + 2n, 0], [253_402_300_799n, 999_999_999]] as [bigint, number][])
            await send(m, encodeFields(baseRequest(m, (g) => (g === f ? [msg(f.number, [varint(1, s), varint(2, BigInt(n))])] : undefined))), `${f.name} = ${s}s ${n}ns`);
        }
        if (f.kind === "enum")
          for (const v of [99n, -1n, 2n ** 31n - 1n]) await send(m, encodeFields(baseRequest(m, (g) => (g === f ? [varint(f.number, v)] : undefined))), `${f.name} = ${v}`);
      }
      // Unknown fields of every wire type are ignored: the answer is the one without them.
      const plain = await send(m, new Uint8Array(), "empty");
      const withUnknown = await send(
        m,
        encodeFields([varint(9001, 5n), lenField(9002, INVALID_UTF8[0]!), { no: 9003, kind: "fixed32", value: 1 }, { no: 9004, kind: "fixed64", value: 2n }, { kind: "raw", bytes: Buffer.concat([tag(9005, 3), Buffer.from([0x08, 0x01]), tag(9005, 4)]) }]),
        "unknown fields",
      );
      expect([withUnknown.code, reasonOf(withUnknown)]).toEqual([plain.code, reasonOf(plain)]);
      // Wire types that do not exist, a length beyond the end, a varint that never ends.
      for (const [note, body] of [
        ["wire type 7", Buffer.concat([tag(1, 7), Buffer.from([1, 2, 3])])],
        ["wire type 6", tag(2, 6)],
        ["length beyond the end", Buffer.from([0x0a, 0x7f, 0x61])],
        ["unterminated varint", Buffer.from([0x10, 0xff, 0xff, 0xff])],
        ["end group without start", tag(1, 4)],
        ["field number 0", Buffer.from([0x00, 0x01])],
      ] as [string, Uint8Array][]) {
        const r = await send(m, body, note);
        expect(codeName(r.code), `${note}: ${r.details}`).toBe("INVALID_ARGUMENT");
      }
      // A plausible request cut short anywhere is refused, never half-applied.
      const whole = encodeFields(baseRequest(m));
      for (const cut of [1, 2, 5, Math.floor(whole.length / 2)]) if (cut < whole.length) await send(m, whole.subarray(0, whole.length - cut), `cut ${cut} bytes`);
    }, 120_000);
  }

  for (const m of contract.methods) {
    it(`${m.service}.${m.name}: huge repeated fields and oversized messages`, async () => {
      const fields = contract.messages.get(m.input) ?? [];
      for (const f of fields.filter((g) => g.repeated && g.kind === "string")) {
        // Many copies of one value, and up to a thousand distinct bad values, long and with control characters
        // (each one a field violation: the status must stay small enough for any client).
        const cases: [string, (i: number) => string][] = [
          ["100000 × 'x'", () => "x"],
          ["2000 × 400 characters", () => "a".repeat(400)],
          ["1001 × a plausible value", () => plausible(f.name)[0] ?? "x"],
          ["999 distinct bad values", (i) => `bad-${"y".repeat(60)}-${i}`],
          ["100 distinct 500-character values with control characters", (i) => `\u0001${"é".repeat(500)}${i}`],
        ];
        for (const [what, value] of cases) {
          const count = Number(what.split(" ")[0]);
          const started = performance.now();
          await send(m, encodeFields(baseRequest(m, (g) => (g === f ? Array.from({ length: count }, (_, i) => str(f.number, value(i))) : undefined))), `${f.name}: ${what}`);
          expect(performance.now() - started, `${f.name}: ${what}`).toBeLessThan(10_000);
        }
      }
      // Over the receive limit (GRPC_MAX_RECEIVE_MESSAGE_BYTES): RESOURCE_EXHAUSTED before any handler runs; nothing written.
      const base = encodeFields(baseRequest(m));
      const padded = (total: number) => {
        let pad = total - base.length;
        for (;;) {
          const out = Buffer.concat([base, encodeFields([lenField(9999, new Uint8Array(pad))])]);
          if (out.length === total) return out;
          pad += total - out.length;
        }
      };
      const over = padded(MAX_RECEIVE + 1);
      expect(over.length).toBe(MAX_RECEIVE + 1);
      const before = current;
      const r = await raw.call(m.path, over, { deadlineMs: 15_000 });
      tally(r);
      expect(codeName(r.code), r.details).toBe("RESOURCE_EXHAUSTED");
      current = await watch.snapshot();
      expect(current).toEqual(before);
      // Exactly at the limit: decoded and answered like any other request (the padding is an unknown field).
      const at = padded(MAX_RECEIVE);
      expect(at.length).toBe(MAX_RECEIVE);
      const answered = await send(m, at, "exactly GRPC_MAX_RECEIVE_MESSAGE_BYTES");
      expect(answered.details).not.toMatch(/larger than max/);
    }, 120_000);
  }

  it("tampered page tokens are INVALID_ARGUMENT (ERROR_REASON_INVALID_PAGE_TOKEN) or, if they decode to the same bytes, the same page", async () => {
    const lists = contract.methods.filter((m) => (contract.messages.get(m.input) ?? []).some((f) => f.name === "page_token"));
    expect(lists.length).toBeGreaterThanOrEqual(3);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // A quiet organization of its own, so the fuzzers' revocations don't empty its lists.
    const PAGES_ORG = "org_pages";
    const { serviceAccounts: s, tokens: t } = clients;
    for (const name of ["p1", "p2", "p3"]) {
      const sa = await call(s.createServiceAccount.bind(s), { organizationId: PAGES_ORG, name, description: "", actor: userActor() });
      await call(t.createToken.bind(t), { organizationId: PAGES_ORG, serviceAccountId: sa.serviceAccount!.id, label: name, scopes: ["org:read"], projectIds: [], environments: [], actor: userActor() });
    }
    current = await watch.snapshot();
    for (const m of lists) {
      const fields = contract.messages.get(m.input)!;
      const pageTokenNo = fields.find((f) => f.name === "page_token")!.number;
      const pageSizeNo = fields.find((f) => f.name === "page_size")?.number;
      const request = (pageToken: string) =>
        encodeFields(
          baseRequest(m, (g) =>
            g.number === pageTokenNo ? [str(g.number, pageToken)] : g.number === pageSizeNo ? [varint(g.number, 1n)] : g.name === "organization_id" ? [str(g.number, PAGES_ORG)] : [],
          ),
        );
      const first = await send(m, request(""), "first page");
      expect(codeName(first.code), first.details).toBe("OK");
      const realToken = stringField(first.response!, nextPageTokenNumber(m));
      expect(realToken.length, `${m.name} gave no next_page_token`).toBeGreaterThan(0);
      const good = await send(m, request(realToken), "real page token");
      expect(codeName(good.code)).toBe("OK");
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.tuple(fc.nat({ max: realToken.length - 1 }), fc.constantFrom(...alphabet)).map(([i, c]) => realToken.slice(0, i) + c + realToken.slice(i + 1)),
            fc.nat({ max: realToken.length - 1 }).map((n) => realToken.slice(0, n)),
            fc.string({ minLength: 1, maxLength: 4 }).map((x) => realToken + x),
            fc.constantFrom(...otherListsPageTokens(m), "", "=", realToken.repeat(3), realToken + "=", `${realToken}\u0000`, "A".repeat(300), Buffer.from("99999999999999999999").toString("base64url")),
            fc.string({ unit: "binary", maxLength: 60 }),
          ),
          async (tampered) => {
            const r = await send(m, request(tampered), `page_token ${JSON.stringify(tampered)}`);
            if (r.code === Code.OK) {
              // Accepted only when it names the same position: base64url ignores the unused bits of its last character.
              if (tampered !== "") expect(Buffer.from(tampered, "base64url").equals(Buffer.from(realToken, "base64url")), `accepted tampered token ${tampered}`).toBe(true);
            } else {
              expect(codeName(r.code), r.details).toBe("INVALID_ARGUMENT");
              expect(fieldsOf(r)).toContain("page_token");
            }
          },
        ),
        { numRuns: Math.max(RUNS, 30), seed: SEED },
      );
    }
  }, 120_000);

  it("tokens with a valid prefix and a bad checksum, truncated or padded, are never allowed (Authorize: TOKEN_MALFORMED)", async () => {
    const authorize = contract.methods.find((m) => m.name === "Authorize")!;
    const real = [...secrets][0]!;
    const body = (token: string) => encodeFields([str(1, token), str(2, "projects:read")]);
    for (const token of [
      real.slice(0, -1) + (real.endsWith("0") ? "1" : "0"),
      real.slice(0, -6) + checksum(real.slice(0, -6) + "x").slice(0, 6),
      real.slice(0, -1),
      real + "0",
      `pw_mgmt_${"0".repeat(38)}`,
      `pw_mgmt_${randomBase62(32)}${"Z".repeat(6)}`,
      real.toUpperCase(),
    ]) {
      const r = await send(authorize, body(token), `token ${token.slice(0, 12)}…`);
      expect(codeName(r.code)).toBe("OK");
      const res = AuthorizeResponse.decode(r.response!);
      expect(res.allowed).toBe(false);
      expect(res.principal).toBeUndefined();
    }
  });

  it("the server is still up and answering, and logged no unexpected error", async () => {
    expect(proc.proc.exitCode).toBeNull();
    const { serviceAccounts: s, tokens: t, authorization: a } = clients;
    const sa = await call(s.createServiceAccount.bind(s), { organizationId: "org_after", name: "after", description: "", actor: userActor() });
    const created = await call(t.createToken.bind(t), {
      organizationId: "org_after",
      serviceAccountId: sa.serviceAccount!.id,
      label: "after",
      scopes: ["projects:read"],
      projectIds: [],
      environments: [],
      actor: userActor(),
    });
    const r = await call(a.authorize.bind(a), { token: created.secret, scope: "projects:read", projectId: "", environment: "", organizationId: "" });
    expect(r.allowed).toBe(true);
    expect(proc.output.filter((l) => /unexpected error|uncaught|unhandled/i.test(l))).toEqual([]);
    expect(requests.byCode.get("INTERNAL") ?? 0).toBe(0);
    expect(requests.byCode.get("UNKNOWN") ?? 0).toBe(0);
  });
});

/** Real page tokens issued by the other List RPCs (bound to other requests). */
function otherListsPageTokens(m: Method): string[] {
  const own = ["ListServiceAccounts", "ListTokens", "ListAuditEvents"].indexOf(m.name);
  return pool.page_token!.filter((_, i) => i !== own);
}

/** The number of the next_page_token field of `m`'s response. */
function nextPageTokenNumber(m: Method): number {
  const f = (contract.messages.get(m.output) ?? []).find((g) => g.name === "next_page_token");
  if (!f) throw new Error(`${m.name} has a page_token but its response no next_page_token`);
  return f.number;
}

/** The value of string field `no` of a message. */
function stringField(message: Buffer, no: number): string {
  const reader = new BinaryReader(message);
  let value = "";
  while (reader.pos < reader.len) {
    const [n, wt] = reader.tag();
    if (n === no && wt === WireType.LengthDelimited) value = reader.string();
    else reader.skip(wt, n);
  }
  return value;
}

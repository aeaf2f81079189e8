/**
 * Guessing tokens. A guessed, truncated, padded or one-character-off token is never allowed,
 * and Authorize does not tell an attacker whether they are close to a real token: unknown
 * tokens get the same reason and the same message whatever their similarity to a real one,
 * and the time to answer is the same for unknown tokens that share all but the last few
 * characters of a real one as for unknown random ones (paired, interleaved samples; a sign test on the pairs, which
 * does not care about outliers, and the median of the paired differences).
 *
 * RELIABILITY_TIMING_PAIRS (default 300) sets the number of timed pairs.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ALPHABET, authorize, checksum, createServiceAccount, createToken, DecisionReason, type Issued, randomBase62, reasonName, wellFormedToken } from "../support/authz";
import { createTestDatabase, failure, startTestServer, type TestDatabase, type TestServer } from "../support/harness";

const PAIRS = Number(process.env.RELIABILITY_TIMING_PAIRS ?? 300);
const SEED = process.env.RELIABILITY_FUZZ_SEED ? Number(process.env.RELIABILITY_FUZZ_SEED) : undefined;
const PREFIX = "pw_mgmt_";

let db: TestDatabase;
let server: TestServer;
let real: Issued;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db.url, { LOG_LEVEL: "warn" });
  const sa = await createServiceAccount(server.clients, "org_guess", "guess");
  real = await createToken(server.clients, "org_guess", sa, { scopes: ["projects:read", "org:read"] });
  expect((await authorize(server.clients, { token: real.secret, scope: "projects:read" })).allowed).toBe(true);
});

afterAll(async () => {
  await server?.stop();
  await db?.drop();
});

/** The real token with the random character at `i` replaced by `c`, checksum recomputed: well formed, never issued. */
function similar(i: number, c: string): string {
  const body = real.secret.slice(0, PREFIX.length + 32);
  const pos = PREFIX.length + (i % 32);
  const replacement = c === body[pos] ? ALPHABET[(ALPHABET.indexOf(c) + 1) % 62]! : c;
  const changed = body.slice(0, pos) + replacement + body.slice(pos + 1);
  return changed + checksum(changed);
}

const base62Char = fc.constantFrom(...ALPHABET.split(""));

describe("guessed and truncated tokens", () => {
  it("a guessed token is never allowed: random strings, random well-formed tokens, one character off, truncated, padded, re-cased", async () => {
    const guesses = fc.oneof(
      fc.string({ unit: "binary", minLength: 1, maxLength: 60 }),
      fc.string({ minLength: 1, maxLength: 60 }).map((s) => PREFIX + s),
      fc.stringMatching(/^[0-9A-Za-z]{32}$/).map((r) => wellFormedToken(r)),
      fc.tuple(fc.nat(31), base62Char).map(([i, c]) => similar(i, c)),
      fc.nat({ max: real.secret.length - 1 }).filter((n) => n > 0).map((n) => real.secret.slice(0, n)),
      fc.string({ minLength: 1, maxLength: 4 }).map((s) => real.secret + s),
      fc.nat({ max: real.secret.length - 1 }).map((i) => real.secret.slice(0, i) + real.secret.slice(i + 1)),
      fc.constantFrom(real.secret.toUpperCase(), real.secret.toLowerCase(), ` ${real.secret}`, `${real.secret} `, `${real.secret}\n`, real.secret.replace("pw_mgmt_", "pw_test_")),
    );
    let calls = 0;
    await fc.assert(
      fc.asyncProperty(guesses, async (token) => {
        fc.pre(token !== real.secret);
        calls++;
        const res = await authorize(server.clients, { token, scope: "projects:read" });
        expect(res.allowed).toBe(false);
        expect(res.principal).toBeUndefined();
        if (token.length >= 12) expect(res.message).not.toContain(token); // never echoes the credential
      }),
      { numRuns: 400, seed: SEED },
    );
    expect(calls).toBeGreaterThan(300);
  });

  it("every prefix of a real token is refused as malformed (or as missing when empty), never allowed", async () => {
    expect((await failure(authorize(server.clients, { token: "", scope: "projects:read" }))).code).toBe(3); // INVALID_ARGUMENT
    for (let n = 1; n < real.secret.length; n++) {
      const res = await authorize(server.clients, { token: real.secret.slice(0, n), scope: "projects:read" });
      expect(res.allowed).toBe(false);
      expect(reasonName(res.reason)).toBe("DECISION_REASON_TOKEN_MALFORMED");
    }
  });

  it("unknown tokens get one reason and one message, however close they are to a real token", async () => {
    const answers = new Map<string, number>();
    const note = (kind: string, r: { allowed: boolean; reason: DecisionReason; message: string; principal?: unknown }) => {
      const key = JSON.stringify({ kind, allowed: r.allowed, reason: reasonName(r.reason), message: r.message, principal: r.principal ?? null });
      answers.set(key, (answers.get(key) ?? 0) + 1);
    };
    for (let i = 0; i < 32; i++) {
      note("unknown", await authorize(server.clients, { token: similar(i, ALPHABET[(i * 7) % 62]!), scope: "projects:read" }));
      note("unknown", await authorize(server.clients, { token: wellFormedToken(), scope: "projects:read" }));
      // Bad checksum: one character off from the real token vs. random.
      note("malformed", await authorize(server.clients, { token: real.secret.slice(0, -6) + randomBase62(6), scope: "projects:read" }));
      note("malformed", await authorize(server.clients, { token: `${PREFIX}${randomBase62(38)}`, scope: "projects:read" }));
    }
    const keys = [...answers.keys()].map((k) => JSON.parse(k) as { kind: string; reason: string; allowed: boolean; principal: unknown });
    // Exactly one distinct answer per kind: similarity to the real token changes nothing.
    expect(keys.filter((k) => k.kind === "unknown")).toEqual([expect.objectContaining({ reason: "DECISION_REASON_TOKEN_UNKNOWN", allowed: false, principal: null })]);
    expect(keys.filter((k) => k.kind === "malformed")).toEqual([expect.objectContaining({ reason: "DECISION_REASON_TOKEN_MALFORMED", allowed: false, principal: null })]);
  });

  it("answering an unknown token takes as long when it shares most of a real token as when it is random", async () => {
    const time = async (token: string) => {
      const t0 = performance.now();
      const res = await authorize(server.clients, { token, scope: "projects:read" });
      const ms = performance.now() - t0;
      expect(reasonName(res.reason)).toBe("DECISION_REASON_TOKEN_UNKNOWN");
      return ms;
    };
    for (let i = 0; i < 100; i++) await time(wellFormedToken()); // warm up: JIT, pool connections
    const nearTimes: number[] = [];
    const far: number[] = [];
    let nearSlower = 0;
    let ties = 0;
    const used = new Set<string>();
    /** Shares the first 24 to 31 random characters with the real token, then differs: never issued, never asked before. */
    const near = (): string => {
      for (;;) {
        const keep = 24 + Math.floor(Math.random() * 8);
        const body = real.secret.slice(0, PREFIX.length + keep) + randomBase62(32 - keep);
        const token = body + checksum(body);
        if (token !== real.secret && !used.has(token)) {
          used.add(token);
          return token;
        }
      }
    };
    for (let i = 0; i < PAIRS; i++) {
      // Fresh tokens every time, so the negative cache never answers: each one reaches PostgreSQL.
      const a = near();
      const b = wellFormedToken();
      let ta: number;
      let tb: number;
      if (Math.random() < 0.5) {
        ta = await time(a);
        tb = await time(b);
      } else {
        tb = await time(b);
        ta = await time(a);
      }
      nearTimes.push(ta);
      far.push(tb);
      if (ta > tb) nearSlower++;
      else if (ta === tb) ties++;
    }
    const median = (xs: number[]) => {
      const sorted = [...xs].sort((x, y) => x - y);
      const mid = Math.floor(sorted.length / 2);
      return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
    };
    const n = PAIRS - ties;
    const z = (nearSlower - n / 2) / Math.sqrt(n / 4);
    // The typical difference within a pair: both halves of a pair run under the same load, so
    // bursts of load on the machine cancel out, and the median ignores the outliers.
    const shift = median(nearTimes.map((t, i) => t - far[i]!));
    const typical = median([...nearTimes, ...far]);
    console.log(
      `timing: ${PAIRS} pairs; median near-miss ${median(nearTimes).toFixed(3)} ms, median random ${median(far).toFixed(3)} ms; ` +
        `median paired difference ${shift.toFixed(3)} ms (${((100 * shift) / typical).toFixed(1)}% of ${typical.toFixed(3)} ms); ` +
        `near-miss slower in ${nearSlower}/${n} pairs (sign test z = ${z.toFixed(2)})`,
    );
    // Sign test: |z| < 4.5 raises a false alarm about once in 150,000 runs when there is no
    // difference; a systematic one (one kind faster in most pairs) shows as a large |z|.
    expect(Math.abs(z)).toBeLessThan(4.5);
    // And the typical paired difference is small next to the time of a lookup.
    expect(Math.abs(shift)).toBeLessThan(0.25 * typical + 0.05);
  }, 120_000);
});

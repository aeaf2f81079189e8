/**
 * The management token format (issue 2): `pw_mgmt_` + 32 crypto-random base62 characters + a
 * 6-character checksum, the CRC32 of everything before it in base62 (0-9A-Za-z), left-padded
 * with `0`. The checksum is recomputed here independently (zlib.crc32, and a bitwise CRC32
 * that does not trust zlib either).
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  checksum,
  displayPrefix,
  generateToken,
  hashToken,
  isProductKey,
  isWellFormedToken,
  lastFour,
  masked,
  TOKEN_LENGTH,
} from "../../src/tokens/token-format";

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320), bit by bit: independent of zlib. */
function bitwiseCrc32(text: string): number {
  let crc = 0xffffffff;
  for (const byte of Buffer.from(text, "utf8")) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function toBase62Padded(n: number): string {
  let big = BigInt(n);
  let out = "";
  do {
    out = ALPHABET[Number(big % 62n)]! + out;
    big /= 62n;
  } while (big > 0n);
  return out.padStart(6, "0");
}

const expectedChecksum = (body: string) => toBase62Padded(crc32(Buffer.from(body, "utf8")));

function randomBody(): string {
  const t = generateToken();
  return t.slice(0, 40);
}

describe("token format", () => {
  it("is pw_mgmt_ + 32 base62 + 6 base62 checksum (46 characters)", () => {
    expect(TOKEN_LENGTH).toBe(46);
    for (let i = 0; i < 200; i++) {
      const t = generateToken();
      expect(t).toMatch(/^pw_mgmt_[0-9A-Za-z]{32}[0-9A-Za-z]{6}$/);
      expect(t).toHaveLength(46);
    }
  });

  it("ends with the base62 CRC32 of everything before it, computed independently", () => {
    for (let i = 0; i < 500; i++) {
      const t = generateToken();
      const body = t.slice(0, 40);
      expect(t.slice(40)).toBe(expectedChecksum(body));
      expect(bitwiseCrc32(body)).toBe(crc32(body));
    }
  });

  it("zlib.crc32 agrees with the standard CRC-32 check value", () => {
    expect(crc32("123456789")).toBe(0xcbf43926);
    expect(bitwiseCrc32("123456789")).toBe(0xcbf43926);
  });

  it("checksum() left-pads with 0 when the CRC32 is small", () => {
    // Find bodies whose CRC32 has fewer than 6 (and fewer than 5) base62 digits.
    let fiveDigits: string | undefined;
    let fourDigits: string | undefined;
    for (let i = 0; i < 200_000 && (!fiveDigits || !fourDigits); i++) {
      const body = `pw_mgmt_${i.toString().padStart(32, "x")}`;
      const n = crc32(body);
      if (!fiveDigits && n < 62 ** 5) fiveDigits = body;
      if (!fourDigits && n < 62 ** 4) fourDigits = body;
    }
    expect(fiveDigits).toBeDefined();
    expect(fourDigits).toBeDefined();
    expect(checksum(fiveDigits!)).toBe(expectedChecksum(fiveDigits!));
    expect(checksum(fiveDigits!)).toMatch(/^0[0-9A-Za-z]{5}$/);
    expect(checksum(fourDigits!)).toBe(expectedChecksum(fourDigits!));
    expect(checksum(fourDigits!)).toMatch(/^00[0-9A-Za-z]{4}$/);
  });

  it("checksum() is always 6 base62 characters and matches the reference", () => {
    for (const body of ["", "pw_mgmt_", "a", "pw_mgmt_" + "z".repeat(32), "pw_mgmt_" + "0".repeat(32)]) {
      expect(checksum(body)).toMatch(/^[0-9A-Za-z]{6}$/);
      expect(checksum(body)).toBe(expectedChecksum(body));
    }
    expect(checksum("")).toBe("000000"); // crc32("") === 0
  });

  it("draws the 32 random characters from all of base62, roughly uniformly, without repeats", () => {
    const counts = new Map<string, number>();
    const seen = new Set<string>();
    const n = 2000;
    for (let i = 0; i < n; i++) {
      const t = generateToken();
      seen.add(t);
      for (const c of t.slice(8, 40)) counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    expect(seen.size).toBe(n);
    expect(counts.size).toBe(62);
    const expected = (n * 32) / 62; // ~1032
    for (const [, c] of counts) {
      expect(c).toBeGreaterThan(expected * 0.75);
      expect(c).toBeLessThan(expected * 1.25);
    }
  });
});

describe("isWellFormedToken", () => {
  it("accepts generated tokens", () => {
    for (let i = 0; i < 100; i++) expect(isWellFormedToken(generateToken())).toBe(true);
  });

  it("rejects a token with any single character of the random part or checksum changed", () => {
    const t = generateToken();
    for (let i = 8; i < t.length; i++) {
      const c = t[i]!;
      const other = c === "A" ? "B" : "A";
      const altered = t.slice(0, i) + other + t.slice(i + 1);
      expect(isWellFormedToken(altered), `position ${i}`).toBe(false);
    }
  });

  it("rejects wrong prefix, length or alphabet", () => {
    const t = generateToken();
    const body = randomBody();
    expect(isWellFormedToken("pw_test_" + t.slice(8))).toBe(false);
    expect(isWellFormedToken(t.slice(0, -1))).toBe(false);
    expect(isWellFormedToken(t + "0")).toBe(false);
    expect(isWellFormedToken("")).toBe(false);
    const withDash = body.slice(0, 20) + "-" + body.slice(21);
    expect(isWellFormedToken(withDash + checksum(withDash))).toBe(false);
    const withUnicode = body.slice(0, 20) + "é" + body.slice(21);
    expect(isWellFormedToken(withUnicode + checksum(withUnicode))).toBe(false);
    // A well-formed body with a correctly computed checksum is accepted.
    expect(isWellFormedToken(body + expectedChecksum(body))).toBe(true);
  });

  it("recognises product keys", () => {
    expect(isProductKey("pw_test_abc")).toBe(true);
    expect(isProductKey("pw_live_abc")).toBe(true);
    expect(isProductKey(generateToken())).toBe(false);
  });
});

describe("display forms and hash", () => {
  it("prefix is the first 12 characters, masked is prefix + '...' + last 4", () => {
    const t = generateToken();
    expect(displayPrefix(t)).toBe(t.slice(0, 12));
    expect(displayPrefix(t)).toMatch(/^pw_mgmt_[0-9A-Za-z]{4}$/);
    expect(lastFour(t)).toBe(t.slice(-4));
    expect(masked(displayPrefix(t), lastFour(t))).toBe(`${t.slice(0, 12)}...${t.slice(-4)}`);
  });

  it("hashes with SHA-256 of the whole token", () => {
    const t = generateToken();
    const h = hashToken(t);
    expect(h).toHaveLength(32);
    expect(h.equals(createHash("sha256").update(t).digest())).toBe(true);
    expect(h.toString("hex")).not.toContain(Buffer.from(t).toString("hex"));
  });
});

/** shared/page-token.ts: opaque, tamper-evident page tokens bound to their request; page sizes. */
import { describe, expect, it } from "vitest";
import { ErrorReason } from "../../src/generated/pokerworks/identity/v1/error_reason";
import { InvalidArgumentError, Violations } from "../../src/shared/errors";
import { checkPageSize, decodePageToken, DEFAULT_PAGE_SIZE, encodePageToken, MAX_PAGE_SIZE } from "../../src/shared/page-token";

const BINDING = "tokens|org_1||false";

function rejected(token: string, binding = BINDING): InvalidArgumentError {
  try {
    decodePageToken(token, binding);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    const e = err as InvalidArgumentError;
    expect(e.reason).toBe(ErrorReason.ERROR_REASON_INVALID_PAGE_TOKEN);
    expect(e.violations.map((v) => v.field)).toEqual(["page_token"]);
    return e;
  }
  throw new Error(`expected page token ${JSON.stringify(token)} to be rejected`);
}

describe("page tokens", () => {
  it("round-trip the position for the same binding", () => {
    for (const position of ["1", "42", "9223372036854775807"]) {
      const token = encodePageToken(position, BINDING);
      expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(decodePageToken(token, BINDING)).toBe(position);
    }
  });

  it("accept a bigint position (the ORM hydrates bigint columns as bigint)", () => {
    const token = encodePageToken(9007199254740993n, BINDING);
    expect(decodePageToken(token, BINDING)).toBe("9007199254740993");
    expect(token).toBe(encodePageToken("9007199254740993", BINDING));
  });

  it("an empty token means the first page", () => {
    expect(decodePageToken("", BINDING)).toBeUndefined();
  });

  it("are opaque: the position is not readable as plain text", () => {
    const token = encodePageToken("123456", BINDING);
    expect(token).not.toContain("123456");
  });

  it("refuse a token produced for another binding (organization or filters)", () => {
    const token = encodePageToken("10", BINDING);
    rejected(token, "tokens|org_2||false");
    rejected(token, "tokens|org_1||true");
    rejected(token, "service_accounts|org_1|false");
  });

  it("refuse every single-character alteration", () => {
    const token = encodePageToken("77", BINDING);
    for (let i = 0; i < token.length; i++) {
      const c = token[i]!;
      const altered = token.slice(0, i) + (c === "A" ? "B" : "A") + token.slice(i + 1);
      if (altered === token) continue;
      // base64url may decode two strings to the same bytes only if the last char's unused bits change;
      // such a string is then the same token, which is fine. Everything else must be refused.
      const sameBytes = Buffer.from(altered, "base64url").equals(Buffer.from(token, "base64url"));
      if (!sameBytes) rejected(altered);
    }
  });

  it("refuse truncated, extended, garbage and oversized tokens", () => {
    const token = encodePageToken("77", BINDING);
    rejected(token.slice(0, -2));
    rejected(token.slice(0, 10));
    rejected(token + "AAAA");
    rejected("not a token");
    rejected("!!!!");
    rejected("A");
    rejected("A".repeat(300));
    rejected(Buffer.from("1").toString("base64url"));
  });

  it("refuse a correctly signed token whose position is not a sequence number", () => {
    rejected(encodePageToken("abc", BINDING));
    rejected(encodePageToken("-1", BINDING));
    rejected(encodePageToken("", BINDING));
  });
});

describe("checkPageSize", () => {
  const size = (n: number) => {
    const v = new Violations();
    const s = checkPageSize(v, n);
    return { s, fields: v.list.map((x) => x.field) };
  };

  it("defaults to 50 and caps at 200", () => {
    expect(DEFAULT_PAGE_SIZE).toBe(50);
    expect(MAX_PAGE_SIZE).toBe(200);
    expect(size(0)).toEqual({ s: 50, fields: [] });
    expect(size(1)).toEqual({ s: 1, fields: [] });
    expect(size(200)).toEqual({ s: 200, fields: [] });
    expect(size(201)).toEqual({ s: 200, fields: [] });
    expect(size(2_147_483_647)).toEqual({ s: 200, fields: [] });
  });

  it("refuses a negative page size, naming page_size", () => {
    expect(size(-1).fields).toEqual(["page_size"]);
    expect(size(-2_147_483_648).fields).toEqual(["page_size"]);
  });
});

/**
 * The management token format: `pw_mgmt_` + 32 random base62 characters + a 6-character
 * checksum, the CRC32 of everything before it written in base62 (0-9A-Za-z) and
 * left-padded with `0`. Secret scanners can recognise a real token offline by the
 * checksum. Only the SHA-256 of the whole token is stored. Pure functions, no I/O.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { BASE62, randomBase62 } from "../shared/ids";

export const TOKEN_PREFIX = "pw_mgmt_";
export const RANDOM_LENGTH = 32;
export const CHECKSUM_LENGTH = 6;
export const TOKEN_LENGTH = TOKEN_PREFIX.length + RANDOM_LENGTH + CHECKSUM_LENGTH; // 46
/** Shown prefix: `pw_mgmt_` and the first 4 random characters. */
export const DISPLAY_PREFIX_LENGTH = 12;
const PRODUCT_KEY_PREFIXES = ["pw_test_", "pw_live_"];

const IS_BASE62 = new Uint8Array(128);
for (const c of BASE62) IS_BASE62[c.charCodeAt(0)] = 1;

/** The CRC32 of `body` in base62, left-padded with `0` to 6 characters. */
export function checksum(body: string): string {
  let n = crc32(body);
  let out = "";
  while (n > 0) {
    out = BASE62[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out.padStart(CHECKSUM_LENGTH, "0");
}

export function generateToken(): string {
  const body = TOKEN_PREFIX + randomBase62(RANDOM_LENGTH);
  return body + checksum(body);
}

/** True when `value` is exactly a management token: prefix, length, alphabet and checksum. */
export function isWellFormedToken(value: string): boolean {
  if (value.length !== TOKEN_LENGTH || !value.startsWith(TOKEN_PREFIX)) return false;
  for (let i = TOKEN_PREFIX.length; i < TOKEN_LENGTH; i++) {
    const code = value.charCodeAt(i);
    if (code >= 128 || IS_BASE62[code] === 0) return false;
  }
  const split = TOKEN_LENGTH - CHECKSUM_LENGTH;
  return checksum(value.slice(0, split)) === value.slice(split);
}

/** A product API key (`pw_test_` / `pw_live_`), which never manages the console. */
export function isProductKey(value: string): boolean {
  return PRODUCT_KEY_PREFIXES.some((p) => value.startsWith(p));
}

/** SHA-256 of the token: the only form in which it is stored. */
export function hashToken(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

export function displayPrefix(token: string): string {
  return token.slice(0, DISPLAY_PREFIX_LENGTH);
}

export function lastFour(token: string): string {
  return token.slice(-4);
}

export function masked(prefix: string, last4: string): string {
  return `${prefix}...${last4}`;
}

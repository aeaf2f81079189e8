import { randomBytes } from "node:crypto";

export const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** `length` characters drawn uniformly from BASE62 with the crypto RNG (rejection sampling). */
export function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    const bytes = randomBytes(length * 2);
    for (let i = 0; i < bytes.length && out.length < length; i++) {
      const b = bytes[i]!;
      if (b < 248) out += BASE62[b % 62];
    }
  }
  return out;
}

export type IdKind = "sa" | "tok" | "evt";

/** Server-assigned ids: a kind prefix and 24 random base62 characters (~143 bits). */
export function newId(kind: IdKind): string {
  return `${kind}_${randomBase62(24)}`;
}

/**
 * Opaque, tamper-evident page tokens (AIP-158). A token carries the position of the last
 * row returned and is bound to the request that produced it (organization and filters):
 * altered bytes or reuse with other filters is INVALID_ARGUMENT. It is integrity-checked,
 * not secret: it only says where a list stopped.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { ErrorReason } from "../generated/pokerworks/identity/v1/error_reason";
import { InvalidArgumentError, Violations } from "./errors";

const KEY = "pokerworks-identity/page-token/v1";
const MAC_BYTES = 12;

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;

function mac(payload: Buffer, binding: string): Buffer {
  return createHmac("sha256", KEY).update(binding).update("\0").update(payload).digest().subarray(0, MAC_BYTES);
}

/**
 * `position` is the stable ordering key (a sequence number) of the last row returned. The ORM
 * hydrates `bigint` columns as JS bigints at runtime, whatever the entity's declared type.
 */
export function encodePageToken(position: string | bigint, binding: string): string {
  const payload = Buffer.from(String(position), "utf8");
  return Buffer.concat([mac(payload, binding), payload]).toString("base64url");
}

export function decodePageToken(token: string, binding: string): string | undefined {
  if (token === "") return undefined;
  const invalid = () =>
    new InvalidArgumentError(
      [{ field: "page_token", description: "page_token is not a token this service issued for this request; start again without it" }],
      ErrorReason.ERROR_REASON_INVALID_PAGE_TOKEN,
    );
  if (token.length > 256 || !/^[A-Za-z0-9_-]+$/.test(token)) throw invalid();
  const raw = Buffer.from(token, "base64url");
  if (raw.length <= MAC_BYTES) throw invalid();
  const payload = raw.subarray(MAC_BYTES);
  if (!timingSafeEqual(raw.subarray(0, MAC_BYTES), mac(payload, binding))) throw invalid();
  const position = payload.toString("utf8");
  if (!/^\d{1,19}$/.test(position)) throw invalid();
  return position;
}

export function checkPageSize(v: Violations, pageSize: number): number {
  if (pageSize < 0) {
    v.add("page_size", "page_size must not be negative");
    return DEFAULT_PAGE_SIZE;
  }
  if (pageSize === 0) return DEFAULT_PAGE_SIZE;
  return Math.min(pageSize, MAX_PAGE_SIZE);
}

/** Helpers shared by the Authorize test files: fixtures through the public RPCs, and token builders. */
import { crc32 } from "node:zlib";
import { randomBytes } from "node:crypto";
import { type AuthorizeRequest, type AuthorizeResponse, DecisionReason, decisionReasonToJSON } from "../../src/generated/pokerworks/identity/v1/authorization_service";
import { call, type Clients, userActor } from "./harness";

export const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

export function randomBase62(n: number): string {
  let out = "";
  for (const b of randomBytes(n * 2)) {
    if (b < 248) out += ALPHABET[b % 62];
    if (out.length === n) break;
  }
  return out.length === n ? out : out + randomBase62(n - out.length);
}

/** The CRC32 of `body` in base62, left-padded to 6 characters: the documented checksum. */
export function checksum(body: string): string {
  let n = crc32(body);
  let out = "";
  while (n > 0) {
    out = ALPHABET[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out.padStart(6, "0");
}

/** A management token of the documented format with a valid checksum, never issued by anyone. */
export function wellFormedToken(random = randomBase62(32), prefix = "pw_mgmt_"): string {
  const body = prefix + random;
  return body + checksum(body);
}

export interface Issued {
  secret: string;
  tokenId: string;
  serviceAccountId: string;
  organizationId: string;
}

export async function createServiceAccount(c: Clients, organizationId: string, name: string): Promise<string> {
  const res = await call(c.serviceAccounts.createServiceAccount.bind(c.serviceAccounts), { organizationId, name, description: "", actor: userActor() });
  return res.serviceAccount!.id;
}

export async function createToken(
  c: Clients,
  organizationId: string,
  serviceAccountId: string,
  grant: { scopes: string[]; projectIds?: string[]; environments?: string[]; expireTime?: Date; label?: string },
): Promise<Issued> {
  const res = await call(c.tokens.createToken.bind(c.tokens), {
    organizationId,
    serviceAccountId,
    label: grant.label ?? "test",
    scopes: grant.scopes,
    projectIds: grant.projectIds ?? [],
    environments: grant.environments ?? [],
    expireTime: grant.expireTime,
    actor: userActor(),
  });
  return { secret: res.secret, tokenId: res.token!.id, serviceAccountId, organizationId };
}

export async function revokeToken(c: Clients, t: Pick<Issued, "organizationId" | "tokenId">): Promise<void> {
  await call(c.tokens.revokeToken.bind(c.tokens), { organizationId: t.organizationId, tokenId: t.tokenId, actor: userActor() });
}

export async function revokeServiceAccount(c: Clients, organizationId: string, serviceAccountId: string): Promise<void> {
  await call(c.serviceAccounts.revokeServiceAccount.bind(c.serviceAccounts), { organizationId, serviceAccountId, actor: userActor() });
}

export function authorize(c: Clients, req: Partial<AuthorizeRequest> & { token: string; scope: string }): Promise<AuthorizeResponse> {
  return call(c.authorization.authorize.bind(c.authorization), { projectId: "", environment: "", organizationId: "", ...req });
}

export const reasonName = (r: DecisionReason) => decisionReasonToJSON(r);
export { DecisionReason };

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `fn` until it returns true or `timeoutMs` passes. */
export async function waitFor(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 10_000, everyMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

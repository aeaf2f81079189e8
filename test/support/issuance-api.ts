/**
 * Shared helpers of the issue 2 integration suite: typed wrappers over the real grpc-js
 * clients with sensible request defaults, and strict error assertions (one ErrorInfo in the
 * identity.pokerworks.com domain, BadRequest naming the field for invalid input).
 */
import { status as Code, type ServiceError } from "@grpc/grpc-js";
import { createHash } from "node:crypto";
import { expect } from "vitest";
import type { ListAuditEventsRequest } from "../../src/generated/pokerworks/identity/v1/audit_service";
import type {
  CreateServiceAccountRequest,
  ListServiceAccountsRequest,
  RevokeServiceAccountRequest,
  UpdateServiceAccountRequest,
} from "../../src/generated/pokerworks/identity/v1/service_account_service";
import type { CreateTokenRequest, ListTokensRequest, RevokeTokenRequest } from "../../src/generated/pokerworks/identity/v1/token_service";
import { call, decodeStatus, type TestServer, userActor } from "./harness";

export { Code };
export const DOMAIN = "identity.pokerworks.com";

export type Req<T, K extends keyof T> = Partial<T> & Pick<T, K>;

/** The issuance API of one test server, with defaults for every field a test does not care about. */
export function issuanceApi(server: TestServer) {
  const { serviceAccounts: s, tokens: t, audit: a } = server.clients;
  return {
    createSa: (req: Req<CreateServiceAccountRequest, "organizationId" | "name">) =>
      call(s.createServiceAccount.bind(s), { description: "", actor: userActor(), ...req }),
    getSa: (organizationId: string, serviceAccountId: string) => call(s.getServiceAccount.bind(s), { organizationId, serviceAccountId }),
    listSas: (req: Req<ListServiceAccountsRequest, "organizationId">) =>
      call(s.listServiceAccounts.bind(s), { pageSize: 0, pageToken: "", includeRevoked: false, ...req }),
    updateSa: (req: Req<UpdateServiceAccountRequest, "organizationId" | "serviceAccountId">) =>
      call(s.updateServiceAccount.bind(s), { name: "", description: "", updateMask: undefined, actor: userActor(), ...req }),
    revokeSa: (req: Req<RevokeServiceAccountRequest, "organizationId" | "serviceAccountId">) =>
      call(s.revokeServiceAccount.bind(s), { actor: userActor(), ...req }),
    createToken: (req: Req<CreateTokenRequest, "organizationId" | "serviceAccountId">) =>
      call(t.createToken.bind(t), { label: "deploy", scopes: ["projects:read"], projectIds: [], environments: [], actor: userActor(), ...req }),
    getToken: (organizationId: string, tokenId: string) => call(t.getToken.bind(t), { organizationId, tokenId }),
    listTokens: (req: Req<ListTokensRequest, "organizationId">) =>
      call(t.listTokens.bind(t), { serviceAccountId: "", pageSize: 0, pageToken: "", includeInactive: false, ...req }),
    revokeToken: (req: Req<RevokeTokenRequest, "organizationId" | "tokenId">) => call(t.revokeToken.bind(t), { actor: userActor(), ...req }),
    listAudit: (req: Req<ListAuditEventsRequest, "organizationId">) =>
      call(a.listAuditEvents.bind(a), { projectId: "", pageSize: 0, pageToken: "", ...req }),
  };
}
export type IssuanceApi = ReturnType<typeof issuanceApi>;

export interface StrictError {
  code: number;
  message: string;
  reason: string | undefined;
  domain: string | undefined;
  fieldViolations: { field: string; description: string }[];
  errorInfoCount: number;
  badRequestCount: number;
}

/** Expects the call to fail; decodes every detail of its google.rpc.Status. */
export async function fail(promise: Promise<unknown>): Promise<StrictError> {
  try {
    await promise;
  } catch (err) {
    const e = err as ServiceError;
    if (typeof e.code !== "number" || !e.metadata) throw err;
    const d = decodeStatus(e.metadata);
    const details = d.status?.details ?? [];
    return {
      code: e.code,
      message: e.details,
      reason: d.reason,
      domain: d.domain,
      fieldViolations: d.fieldViolations,
      errorInfoCount: details.filter((x) => x.typeUrl.endsWith("/google.rpc.ErrorInfo")).length,
      badRequestCount: details.filter((x) => x.typeUrl.endsWith("/google.rpc.BadRequest")).length,
    };
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/**
 * Expects the call to fail with `code` and `reason`; checks the error carries exactly one
 * ErrorInfo in our domain, and, for INVALID_ARGUMENT, a BadRequest naming `field`.
 */
export async function expectError(promise: Promise<unknown>, code: Code, reason: string, field?: string): Promise<StrictError> {
  const e = await fail(promise);
  expect({ code: Code[e.code], reason: e.reason }, e.message).toEqual({ code: Code[code], reason });
  expect(e.domain).toBe(DOMAIN);
  expect(e.errorInfoCount).toBe(1);
  expect(e.message.length).toBeGreaterThan(0);
  if (code === Code.INVALID_ARGUMENT) {
    expect(e.badRequestCount).toBe(1);
    expect(e.fieldViolations.length).toBeGreaterThan(0);
  }
  if (field !== undefined) expect(e.fieldViolations.map((v) => v.field), e.message).toContain(field);
  return e;
}

/** INVALID_ARGUMENT (ERROR_REASON_INVALID_FIELD) naming `field`. */
export const expectInvalid = (promise: Promise<unknown>, field: string, reason = "ERROR_REASON_INVALID_FIELD") =>
  expectError(promise, Code.INVALID_ARGUMENT, reason, field);

export const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest();

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads every page of a list, checking that each page respects `pageSize`. */
export async function allPages<T>(fetch: (pageToken: string) => Promise<{ items: T[]; next: string }>, pageSize: number): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let token = "";
  let pages = 0;
  do {
    const page = await fetch(token);
    pages++;
    expect(page.items.length).toBeLessThanOrEqual(pageSize);
    if (page.next !== "") expect(page.items.length).toBe(pageSize);
    items.push(...page.items);
    token = page.next;
    if (pages > 10_000) throw new Error("pagination does not end");
  } while (token !== "");
  return { items, pages };
}

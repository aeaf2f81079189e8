/**
 * The Authorizer's shared lookups (src/authorization/authorizer.ts), made deterministic with
 * a lookup whose answers the test releases by hand. Concurrent cache misses share one
 * PostgreSQL lookup; but when the revocation markers can't be trusted, a lookup that started
 * before a call began (and so maybe before a revocation that returned before that call) must
 * not decide that call. The same race through real servers is in
 * test/integration/redis-faults.test.ts.
 */
import { describe, expect, it } from "vitest";
import { Authorizer } from "../../src/authorization/authorizer";
import type { MarkerCheck, RevocationStore } from "../../src/authorization/revocation-store";
import type { TokenRecord } from "../../src/authorization/rules";
import { DecisionReason, decisionReasonToJSON } from "../../src/generated/pokerworks/identity/v1/authorization_service";
import { wellFormedToken } from "../support/authz";

const record = (over: Partial<TokenRecord> = {}): TokenRecord =>
  ({
    supersededByTokenId: "",
    tokenId: "tok_1",
    organizationId: "org_1",
    serviceAccountId: "sa_1",
    scopes: ["projects:read"],
    projectIds: [],
    environments: [],
    expireTimeMs: null,
    tokenRevoked: false,
    serviceAccountRevoked: false,
    ...over,
  }) as TokenRecord;

function setup(markers: MarkerCheck) {
  const lookups: ((r: TokenRecord | null) => void)[] = [];
  const store: RevocationStore = {
    kind: "redis",
    check: async () => markers,
    publish: async () => undefined,
    trusted: () => markers.trusted,
    onInvalidate: () => undefined,
    start: async () => undefined,
    close: async () => undefined,
  };
  const authorizer = new Authorizer({
    lookup: () => new Promise((resolve) => lookups.push(resolve)),
    revocations: store,
    lastUsed: { touch: () => undefined },
    cacheMaxEntries: 100,
    cacheTtlMs: 60_000,
    negativeCacheMaxEntries: 100,
    lookupTimeoutMs: 5_000,
  });
  return { authorizer, lookups };
}

const ask = (a: Authorizer, token: string) => a.authorize({ token, scope: "projects:read", projectId: "", environment: "", organizationId: "" });
const settle = () => new Promise((r) => setTimeout(r, 5));
const name = (r: DecisionReason) => decisionReasonToJSON(r);

describe("Authorizer: shared lookups", () => {
  it("markers untrusted: a call that begins while an older lookup is in flight is decided by a newer one", async () => {
    const { authorizer, lookups } = setup({ trusted: false });
    const token = wellFormedToken();
    const first = ask(authorizer, token);
    await settle();
    expect(lookups.length).toBe(1);
    // ... the token is revoked and the revocation returns here ...
    const second = ask(authorizer, token);
    await settle();
    lookups[0]!(record()); // the old read, from before the revocation: active
    await settle();
    // The second call may not rely on that read: it needs one that started after it began.
    expect(lookups.length).toBe(2);
    lookups[1]!(record({ tokenRevoked: true }));
    expect(name((await first).reason)).toBe("DECISION_REASON_ALLOWED"); // began before the revocation
    expect(name((await second).reason)).toBe("DECISION_REASON_TOKEN_REVOKED");
  });

  it("markers untrusted: a re-read in flight for an earlier call does not decide a later one", async () => {
    const { authorizer, lookups } = setup({ trusted: false });
    const token = wellFormedToken();
    const warm = ask(authorizer, token);
    await settle();
    lookups[0]!(record());
    expect((await warm).allowed).toBe(true); // now cached
    const a = ask(authorizer, token); // cached, markers untrusted → re-read from PostgreSQL (lookup #2)
    await settle();
    expect(lookups.length).toBe(2);
    // ... the token is revoked and the revocation returns here ...
    const b = ask(authorizer, token);
    await settle();
    lookups[1]!(record()); // #2 read the token before the revocation: active
    await settle();
    expect(lookups.length).toBe(3);
    lookups[2]!(record({ tokenRevoked: true }));
    expect(name((await a).reason)).toBe("DECISION_REASON_ALLOWED"); // began before the revocation
    expect(name((await b).reason)).toBe("DECISION_REASON_TOKEN_REVOKED");
  });

  it("markers trusted: concurrent misses for one token share a single lookup", async () => {
    const { authorizer, lookups } = setup({ trusted: true, tokenRevoked: false, serviceAccountRevoked: false, epochChanged: false, changed: null });
    const token = wellFormedToken();
    const calls = Array.from({ length: 50 }, () => ask(authorizer, token));
    await settle();
    expect(lookups.length).toBe(1);
    lookups[0]!(record());
    for (const d of await Promise.all(calls)) expect(d.allowed).toBe(true);
  });

  it("markers trusted: a marker refuses a record read before the revocation", async () => {
    const { authorizer, lookups } = setup({ trusted: true, tokenRevoked: true, serviceAccountRevoked: false, epochChanged: false, changed: null });
    const token = wellFormedToken();
    const call = ask(authorizer, token);
    await settle();
    lookups[0]!(record());
    expect(name((await call).reason)).toBe("DECISION_REASON_TOKEN_REVOKED");
  });

  it("an unknown token is asked for once, then answered from the negative cache", async () => {
    const { authorizer, lookups } = setup({ trusted: true, tokenRevoked: false, serviceAccountRevoked: false, epochChanged: false, changed: null });
    const token = wellFormedToken();
    const first = ask(authorizer, token);
    await settle();
    lookups[0]!(null);
    expect(name((await first).reason)).toBe("DECISION_REASON_TOKEN_UNKNOWN");
    for (let i = 0; i < 10; i++) expect(name((await ask(authorizer, token)).reason)).toBe("DECISION_REASON_TOKEN_UNKNOWN");
    expect(lookups.length).toBe(1);
  });
});

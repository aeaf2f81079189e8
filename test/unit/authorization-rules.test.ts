/**
 * The pure Authorize decision (src/authorization/rules.ts: decideForRecord), rule by rule
 * and in order of precedence, against the product page and issue 3's list of reasons.
 */
import { describe, expect, it } from "vitest";
import { validateAuthorizeRequest } from "../../src/authorization/authorizer";
import { type AuthorizeQuery, decideForRecord, MALFORMED, PRODUCT_KEY, type TokenRecord, UNKNOWN } from "../../src/authorization/rules";
import { DecisionReason, decisionReasonToJSON } from "../../src/generated/pokerworks/identity/v1/authorization_service";
import { InvalidArgumentError } from "../../src/shared/errors";
import { HUMAN_ONLY_ACTIONS, LAUNCH_SCOPES } from "../../src/shared/scopes";

const R = DecisionReason;
const NOW = Date.UTC(2026, 11, 4, 12, 0, 0);

function record(over: Partial<TokenRecord> = {}): TokenRecord {
  const base: Omit<TokenRecord, "supersededByTokenId"> & Partial<TokenRecord> = {
    tokenId: "tok_1",
    organizationId: "org_1",
    serviceAccountId: "sa_1",
    scopes: [...LAUNCH_SCOPES],
    projectIds: [],
    environments: [],
    expireTimeMs: null,
    tokenRevoked: false,
    serviceAccountRevoked: false,
  };
  // Fields beyond issue 3's (e.g. rotation's supersededByTokenId) default to "not set".
  return { supersededByTokenId: "", ...base, ...over } as TokenRecord;
}

function query(over: Partial<AuthorizeQuery> = {}): AuthorizeQuery {
  return { scope: "projects:read", projectId: "", environment: "", organizationId: "", ...over };
}

const decide = (r: Partial<TokenRecord>, q: Partial<AuthorizeQuery>, now = NOW) => decisionReasonToJSON(decideForRecord(record(r), query(q), now).reason);
const name = (r: DecisionReason) => decisionReasonToJSON(r);

describe("decideForRecord: each reason on its own", () => {
  const cases: { title: string; r: Partial<TokenRecord>; q: Partial<AuthorizeQuery>; want: DecisionReason }[] = [
    { title: "service account revoked", r: { serviceAccountRevoked: true }, q: {}, want: R.DECISION_REASON_SERVICE_ACCOUNT_REVOKED },
    { title: "token revoked", r: { tokenRevoked: true }, q: {}, want: R.DECISION_REASON_TOKEN_REVOKED },
    { title: "token expired", r: { expireTimeMs: NOW - 1000 }, q: {}, want: R.DECISION_REASON_TOKEN_EXPIRED },
    { title: "organization mismatch", r: {}, q: { organizationId: "org_2" }, want: R.DECISION_REASON_ORGANIZATION_MISMATCH },
    { title: "human-only action", r: {}, q: { scope: "billing:write" }, want: R.DECISION_REASON_NOT_AVAILABLE_TO_SERVICE_ACCOUNTS },
    { title: "scope not granted", r: { scopes: ["projects:read"] }, q: { scope: "usage:read" }, want: R.DECISION_REASON_SCOPE_NOT_GRANTED },
    { title: "environment not allowed", r: { environments: ["test"] }, q: { environment: "live" }, want: R.DECISION_REASON_ENVIRONMENT_NOT_ALLOWED },
    { title: "project not allowed", r: { projectIds: ["p1"] }, q: { projectId: "p2" }, want: R.DECISION_REASON_PROJECT_NOT_ALLOWED },
    { title: "account level (billing:read, project-restricted)", r: { projectIds: ["p1"] }, q: { scope: "billing:read" }, want: R.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED },
    { title: "allowed", r: {}, q: {}, want: R.DECISION_REASON_ALLOWED },
  ];
  it.each(cases)("$title", ({ r, q, want }) => {
    expect(decide(r, q)).toBe(name(want));
  });

  it("allowed with a matching organization, project and environment", () => {
    expect(decide({ projectIds: ["p1", "p2"], environments: ["live"] }, { organizationId: "org_1", projectId: "p2", environment: "live", scope: "usage:read" })).toBe(
      name(R.DECISION_REASON_ALLOWED),
    );
  });
});

describe("decideForRecord: the first matching rule wins", () => {
  // Every rule from 4 to 10 made to match at once; peeling them off one by one from the top
  // must reveal each reason in the documented order.
  const all: { r: Partial<TokenRecord>; q: Partial<AuthorizeQuery> } = {
    r: { serviceAccountRevoked: true, tokenRevoked: true, expireTimeMs: NOW - 1, scopes: ["audit_log:read"], projectIds: ["p1"], environments: ["test"] },
    q: { organizationId: "org_2", scope: "billing:write", environment: "live", projectId: "p2" },
  };
  const steps: { fix: (c: typeof all) => void; next: DecisionReason }[] = [
    { fix: () => undefined, next: R.DECISION_REASON_SERVICE_ACCOUNT_REVOKED },
    { fix: (c) => (c.r.serviceAccountRevoked = false), next: R.DECISION_REASON_TOKEN_REVOKED },
    { fix: (c) => (c.r.tokenRevoked = false), next: R.DECISION_REASON_TOKEN_EXPIRED },
    { fix: (c) => (c.r.expireTimeMs = NOW + 1), next: R.DECISION_REASON_ORGANIZATION_MISMATCH },
    { fix: (c) => (c.q.organizationId = "org_1"), next: R.DECISION_REASON_NOT_AVAILABLE_TO_SERVICE_ACCOUNTS },
    { fix: (c) => (c.q.scope = "usage:read"), next: R.DECISION_REASON_SCOPE_NOT_GRANTED },
    { fix: (c) => (c.q.scope = "audit_log:read"), next: R.DECISION_REASON_ENVIRONMENT_NOT_ALLOWED },
    { fix: (c) => (c.q.environment = "test"), next: R.DECISION_REASON_PROJECT_NOT_ALLOWED },
    { fix: (c) => (c.q.projectId = ""), next: R.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED },
    { fix: (c) => (c.q.projectId = "p1"), next: R.DECISION_REASON_ALLOWED },
  ];
  it("peels off rules 4 to 11 in order", () => {
    const c = { r: { ...all.r }, q: { ...all.q } };
    const seen: string[] = [];
    for (const step of steps) {
      step.fix(c);
      seen.push(decide(c.r, c.q));
    }
    expect(seen).toEqual(steps.map((s) => name(s.next)));
  });

  it("service account revoked beats token revoked beats expired", () => {
    expect(decide({ serviceAccountRevoked: true, tokenRevoked: true, expireTimeMs: NOW - 1 }, {})).toBe(name(R.DECISION_REASON_SERVICE_ACCOUNT_REVOKED));
    expect(decide({ serviceAccountRevoked: true, expireTimeMs: NOW - 1 }, {})).toBe(name(R.DECISION_REASON_SERVICE_ACCOUNT_REVOKED));
    expect(decide({ tokenRevoked: true, expireTimeMs: NOW - 1 }, {})).toBe(name(R.DECISION_REASON_TOKEN_REVOKED));
  });

  it("organization mismatch comes before the human-only check and every grant check", () => {
    expect(decide({}, { organizationId: "org_2", scope: "org:delete" })).toBe(name(R.DECISION_REASON_ORGANIZATION_MISMATCH));
    expect(decide({ scopes: ["org:read"], projectIds: ["p1"], environments: ["test"] }, { organizationId: "org_2", scope: "usage:read", projectId: "p2", environment: "live" })).toBe(
      name(R.DECISION_REASON_ORGANIZATION_MISMATCH),
    );
  });

  it("a human-only action is NOT_AVAILABLE even for a token that somehow holds it", () => {
    expect(decide({ scopes: [...LAUNCH_SCOPES, "billing:write"] }, { scope: "billing:write" })).toBe(name(R.DECISION_REASON_NOT_AVAILABLE_TO_SERVICE_ACCOUNTS));
  });

  it("scope before environment before project before account level", () => {
    const restricted = { scopes: ["usage:read", "audit_log:read", "billing:read"], projectIds: ["p1"], environments: ["test"] };
    expect(decide(restricted, { scope: "projects:read", environment: "live", projectId: "p2" })).toBe(name(R.DECISION_REASON_SCOPE_NOT_GRANTED));
    expect(decide(restricted, { scope: "usage:read", environment: "live", projectId: "p2" })).toBe(name(R.DECISION_REASON_ENVIRONMENT_NOT_ALLOWED));
    expect(decide(restricted, { scope: "usage:read", environment: "test", projectId: "p2" })).toBe(name(R.DECISION_REASON_PROJECT_NOT_ALLOWED));
    expect(decide(restricted, { scope: "billing:read", environment: "live", projectId: "p1" })).toBe(name(R.DECISION_REASON_ENVIRONMENT_NOT_ALLOWED));
    expect(decide(restricted, { scope: "billing:read", environment: "test", projectId: "p2" })).toBe(name(R.DECISION_REASON_PROJECT_NOT_ALLOWED));
    expect(decide(restricted, { scope: "audit_log:read", projectId: "p2" })).toBe(name(R.DECISION_REASON_PROJECT_NOT_ALLOWED));
  });
});

describe("decideForRecord: expiry is exact", () => {
  const exp = NOW + 60_000;
  it("allowed until the millisecond before expire_time, expired from expire_time on", () => {
    expect(decide({ expireTimeMs: exp }, {}, exp - 1)).toBe(name(R.DECISION_REASON_ALLOWED));
    expect(decide({ expireTimeMs: exp }, {}, exp)).toBe(name(R.DECISION_REASON_TOKEN_EXPIRED));
    expect(decide({ expireTimeMs: exp }, {}, exp + 1)).toBe(name(R.DECISION_REASON_TOKEN_EXPIRED));
  });
  it("a token without expire_time never expires", () => {
    expect(decide({ expireTimeMs: null }, {}, Date.UTC(9999, 11, 31))).toBe(name(R.DECISION_REASON_ALLOWED));
  });
});

describe("decideForRecord: organization", () => {
  it("an empty organization_id matches any token; the token's own matches", () => {
    expect(decide({}, { organizationId: "" })).toBe(name(R.DECISION_REASON_ALLOWED));
    expect(decide({}, { organizationId: "org_1" })).toBe(name(R.DECISION_REASON_ALLOWED));
  });
  it("comparison is exact (no case folding, no prefix match)", () => {
    expect(decide({}, { organizationId: "ORG_1" })).toBe(name(R.DECISION_REASON_ORGANIZATION_MISMATCH));
    expect(decide({}, { organizationId: "org_10" })).toBe(name(R.DECISION_REASON_ORGANIZATION_MISMATCH));
    expect(decide({}, { organizationId: "org_" })).toBe(name(R.DECISION_REASON_ORGANIZATION_MISMATCH));
  });
});

describe("decideForRecord: human-only actions", () => {
  it.each([...HUMAN_ONLY_ACTIONS])("%s is not available to service accounts", (scope) => {
    expect(decide({}, { scope })).toBe(name(R.DECISION_REASON_NOT_AVAILABLE_TO_SERVICE_ACCOUNTS));
  });
  it("the list has at least the product page's eight actions", () => {
    expect(HUMAN_ONLY_ACTIONS).toEqual(
      expect.arrayContaining([
        "billing:write",
        "credit_packs:purchase",
        "auto_recharge:update",
        "members:manage",
        "org:update",
        "org:delete",
        "service_accounts:manage",
        "management_tokens:create",
      ]),
    );
  });
});

describe("decideForRecord: scopes", () => {
  it.each([...LAUNCH_SCOPES])("%s is allowed when held and not granted when not held", (scope) => {
    expect(decide({ scopes: [scope] }, { scope })).toBe(name(R.DECISION_REASON_ALLOWED));
    const others = LAUNCH_SCOPES.filter((s) => s !== scope);
    expect(decide({ scopes: others }, { scope })).toBe(name(R.DECISION_REASON_SCOPE_NOT_GRANTED));
  });
});

describe("decideForRecord: environment restriction", () => {
  it("an environment-restricted token is allowed in its environments only", () => {
    expect(decide({ environments: ["test"] }, { environment: "test" })).toBe(name(R.DECISION_REASON_ALLOWED));
    expect(decide({ environments: ["test"] }, { environment: "live" })).toBe(name(R.DECISION_REASON_ENVIRONMENT_NOT_ALLOWED));
    expect(decide({ environments: ["live"] }, { environment: "test" })).toBe(name(R.DECISION_REASON_ENVIRONMENT_NOT_ALLOWED));
    expect(decide({ environments: ["test", "live"] }, { environment: "live" })).toBe(name(R.DECISION_REASON_ALLOWED));
  });
  it("no environment given: the restriction does not apply", () => {
    expect(decide({ environments: ["test"] }, { environment: "" })).toBe(name(R.DECISION_REASON_ALLOWED));
  });
  it("an unrestricted token is allowed in both environments", () => {
    expect(decide({ environments: [] }, { environment: "test" })).toBe(name(R.DECISION_REASON_ALLOWED));
    expect(decide({ environments: [] }, { environment: "live" })).toBe(name(R.DECISION_REASON_ALLOWED));
  });
});

describe("decideForRecord: project restriction", () => {
  it("a project-restricted token is allowed on its projects only", () => {
    expect(decide({ projectIds: ["p1", "p2"] }, { projectId: "p1" })).toBe(name(R.DECISION_REASON_ALLOWED));
    expect(decide({ projectIds: ["p1", "p2"] }, { projectId: "p2" })).toBe(name(R.DECISION_REASON_ALLOWED));
    expect(decide({ projectIds: ["p1", "p2"] }, { projectId: "p3" })).toBe(name(R.DECISION_REASON_PROJECT_NOT_ALLOWED));
    expect(decide({ projectIds: ["p1"] }, { projectId: "P1" })).toBe(name(R.DECISION_REASON_PROJECT_NOT_ALLOWED));
  });
  it("no project given: the restriction does not apply (for project-scoped scopes)", () => {
    expect(decide({ projectIds: ["p1"] }, { projectId: "", scope: "projects:read" })).toBe(name(R.DECISION_REASON_ALLOWED));
  });
  it("an unrestricted token is allowed on any project", () => {
    expect(decide({ projectIds: [] }, { projectId: "anything" })).toBe(name(R.DECISION_REASON_ALLOWED));
  });
});

describe("decideForRecord: account-level rules", () => {
  const AL = name(R.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED);
  const OK = name(R.DECISION_REASON_ALLOWED);
  it("billing:read by a project-restricted token, with or without a (listed) project", () => {
    expect(decide({ projectIds: ["p1"] }, { scope: "billing:read" })).toBe(AL);
    expect(decide({ projectIds: ["p1"] }, { scope: "billing:read", projectId: "p1" })).toBe(AL);
    expect(decide({ projectIds: ["p1"], environments: ["live"] }, { scope: "billing:read", environment: "live" })).toBe(AL);
  });
  it("billing:read by a token restricted only by environment, or unrestricted, is allowed", () => {
    expect(decide({ environments: ["test"] }, { scope: "billing:read" })).toBe(OK);
    expect(decide({}, { scope: "billing:read" })).toBe(OK);
  });
  it("projects:create by a project-restricted token, with or without a (listed) project", () => {
    expect(decide({ projectIds: ["p1"] }, { scope: "projects:create" })).toBe(AL);
    expect(decide({ projectIds: ["p1"] }, { scope: "projects:create", projectId: "p1" })).toBe(AL);
  });
  it("projects:create by a token restricted only by environment, or unrestricted, is allowed", () => {
    expect(decide({ environments: ["live"] }, { scope: "projects:create" })).toBe(OK);
    expect(decide({}, { scope: "projects:create" })).toBe(OK);
  });
  it("audit_log:read without project_id by a token with any restriction", () => {
    expect(decide({ projectIds: ["p1"] }, { scope: "audit_log:read" })).toBe(AL);
    expect(decide({ environments: ["test"] }, { scope: "audit_log:read" })).toBe(AL);
    expect(decide({ projectIds: ["p1"], environments: ["test", "live"] }, { scope: "audit_log:read" })).toBe(AL);
    // An environment in the request does not make it project-level.
    expect(decide({ environments: ["test"] }, { scope: "audit_log:read", environment: "test" })).toBe(AL);
  });
  it("audit_log:read with a project_id the token may see is allowed", () => {
    expect(decide({ projectIds: ["p1"] }, { scope: "audit_log:read", projectId: "p1" })).toBe(OK);
    expect(decide({ environments: ["test"] }, { scope: "audit_log:read", projectId: "p9" })).toBe(OK);
  });
  it("audit_log:read by an unrestricted token is allowed with or without a project", () => {
    expect(decide({}, { scope: "audit_log:read" })).toBe(OK);
    expect(decide({}, { scope: "audit_log:read", projectId: "p1" })).toBe(OK);
  });
  it("the other scopes have no account-level rule", () => {
    for (const scope of LAUNCH_SCOPES.filter((s) => !["billing:read", "projects:create", "audit_log:read"].includes(s))) {
      expect(decide({ projectIds: ["p1"], environments: ["test"] }, { scope }), scope).toBe(OK);
    }
  });
});

describe("decideForRecord: messages", () => {
  it("every decision has a one-sentence message naming no secret", () => {
    const samples = [
      decideForRecord(record({ serviceAccountRevoked: true }), query(), NOW),
      decideForRecord(record({ tokenRevoked: true }), query(), NOW),
      decideForRecord(record({ expireTimeMs: NOW - 1 }), query(), NOW),
      decideForRecord(record(), query({ organizationId: "org_2" }), NOW),
      decideForRecord(record(), query({ scope: "org:delete" }), NOW),
      decideForRecord(record({ scopes: ["org:read"] }), query(), NOW),
      decideForRecord(record({ environments: ["test"] }), query({ environment: "live" }), NOW),
      decideForRecord(record({ projectIds: ["p1"] }), query({ projectId: "p2" }), NOW),
      decideForRecord(record({ projectIds: ["p1"] }), query({ scope: "billing:read" }), NOW),
      decideForRecord(record({ environments: ["test"] }), query({ scope: "audit_log:read" }), NOW),
      decideForRecord(record(), query(), NOW),
      PRODUCT_KEY,
      MALFORMED,
      UNKNOWN,
    ];
    for (const d of samples) {
      expect(d.message.length, name(d.reason)).toBeGreaterThan(10);
      expect(d.message, name(d.reason)).not.toMatch(/\n/);
      expect(d.message).not.toMatch(/pw_mgmt_[A-Za-z0-9]{4}/);
    }
    expect(new Set(samples.map((d) => d.reason)).size).toBe(13);
  });
  it("the fixed decisions carry their reasons", () => {
    expect(PRODUCT_KEY.reason).toBe(R.DECISION_REASON_PRODUCT_KEY_NOT_ACCEPTED);
    expect(MALFORMED.reason).toBe(R.DECISION_REASON_TOKEN_MALFORMED);
    expect(UNKNOWN.reason).toBe(R.DECISION_REASON_TOKEN_UNKNOWN);
  });
});

describe("validateAuthorizeRequest", () => {
  const valid = { token: "x", scope: "projects:read", projectId: "", environment: "", organizationId: "" };
  const fieldsOf = (req: typeof valid): string[] => {
    try {
      validateAuthorizeRequest(req);
      return [];
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidArgumentError);
      return (err as InvalidArgumentError).violations.map((v) => v.field);
    }
  };
  it("accepts every launch scope and every human-only action (the latter is denied later, not invalid)", () => {
    for (const scope of [...LAUNCH_SCOPES, ...HUMAN_ONLY_ACTIONS]) expect(fieldsOf({ ...valid, scope }), scope).toEqual([]);
  });
  it("accepts test, live and no environment", () => {
    for (const environment of ["", "test", "live"]) expect(fieldsOf({ ...valid, environment })).toEqual([]);
  });
  it.each([
    [{ token: "" }, ["token"]],
    [{ scope: "" }, ["scope"]],
    [{ scope: "projects:delete" }, ["scope"]],
    [{ scope: "PROJECTS:READ" }, ["scope"]],
    [{ scope: " projects:read" }, ["scope"]],
    [{ environment: "prod" }, ["environment"]],
    [{ environment: "TEST" }, ["environment"]],
    [{ token: "", scope: "" }, ["token", "scope"]],
  ] as [Partial<typeof valid>, string[]][])("%j is invalid in %j", (over, fields) => {
    expect(fieldsOf({ ...valid, ...over })).toEqual(fields);
  });
});

/** tokens/rules.ts checkTokenGrant: every issuance rule on label, scopes, restrictions and expiry. */
import { describe, expect, it } from "vitest";
import { ErrorReason } from "../../src/generated/pokerworks/identity/v1/error_reason";
import { InvalidArgumentError, Violations } from "../../src/shared/errors";
import { HUMAN_ONLY_ACTIONS, LAUNCH_SCOPES } from "../../src/shared/scopes";
import { checkTokenGrant, type TokenGrantInput } from "../../src/tokens/rules";

const NOW = new Date("2030-01-01T00:00:00.000Z");

function input(over: Partial<TokenGrantInput> = {}): TokenGrantInput {
  return { label: "deploy", scopes: ["projects:read"], projectIds: [], environments: [], expireTime: undefined, ...over };
}

function check(over: Partial<TokenGrantInput> = {}) {
  const v = new Violations();
  const grant = checkTokenGrant(v, input(over), NOW);
  return { v: v.list, grant, fields: v.list.map((x) => x.field) };
}

function thrown(over: Partial<TokenGrantInput>): InvalidArgumentError {
  try {
    checkTokenGrant(new Violations(), input(over), NOW);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    return err as InvalidArgumentError;
  }
  throw new Error("expected checkTokenGrant to throw");
}

describe("checkTokenGrant: a valid grant", () => {
  it("returns the normalized grant and no violations", () => {
    const expire = new Date(NOW.getTime() + 60_000);
    const { v, grant } = check({
      label: "  deploy bot  ",
      scopes: ["projects:read", "org:read", "projects:read"],
      projectIds: ["p1", "p2", "p1"],
      environments: ["live", "test", "live"],
      expireTime: expire,
    });
    expect(v).toEqual([]);
    expect(grant).toEqual({
      label: "deploy bot",
      scopes: ["projects:read", "org:read"],
      projectIds: ["p1", "p2"],
      environments: ["live", "test"],
      expireTime: expire,
    });
  });

  it("accepts every launch scope together (without project restrictions)", () => {
    const { v, grant } = check({ scopes: [...LAUNCH_SCOPES] });
    expect(v).toEqual([]);
    expect(grant.scopes).toEqual([...LAUNCH_SCOPES]);
  });

  it("no expire_time means never", () => {
    expect(check().grant.expireTime).toBeNull();
  });
});

describe("checkTokenGrant: label", () => {
  it.each([
    ["empty", ""],
    ["only white space", "   \t  "],
    ["101 characters", "x".repeat(101)],
    ["a control character", "de\u0000ploy"],
  ])("refuses a label that is %s", (_what, label) => {
    expect(check({ label }).fields).toEqual(["label"]);
  });

  it("accepts 1 and 100 characters (after trimming, counting code points)", () => {
    expect(check({ label: "x" }).v).toEqual([]);
    expect(check({ label: "x".repeat(100) }).v).toEqual([]);
    expect(check({ label: `  ${"x".repeat(100)}  ` }).grant.label).toBe("x".repeat(100));
    expect(check({ label: "🂡".repeat(100) }).v).toEqual([]);
    expect(check({ label: "🂡".repeat(101) }).fields).toEqual(["label"]);
  });
});

describe("checkTokenGrant: scopes", () => {
  it("requires at least one scope", () => {
    const { v } = check({ scopes: [] });
    expect(v.map((x) => x.field)).toEqual(["scopes"]);
    expect(v[0]!.description).toMatch(/at least one scope/);
  });

  it("refuses an unknown scope, naming its position", () => {
    const { v } = check({ scopes: ["projects:read", "projects:delete"] });
    expect(v.map((x) => x.field)).toEqual(["scopes[1]"]);
    expect(v[0]!.description).toMatch(/not a scope/);
  });

  it("names the position in the request, not in the de-duplicated list", () => {
    const { fields } = check({ scopes: ["org:read", "org:read", "nope"] });
    expect(fields).toEqual(["scopes[2]"]);
    const p = check({ projectIds: ["p1", "p1", "-bad"] });
    expect(p.fields).toEqual(["project_ids[2]"]);
    const e = check({ environments: ["test", "test", "prod"] });
    expect(e.fields).toEqual(["environments[2]"]);
  });

  it.each(HUMAN_ONLY_ACTIONS.map((s) => [s]))("refuses the human-only action %s as not available to service accounts", (scope) => {
    const err = thrown({ scopes: ["projects:read", scope] });
    expect(err.reason).toBe(ErrorReason.ERROR_REASON_SCOPE_NOT_AVAILABLE_TO_SERVICE_ACCOUNTS);
    expect(err.violations).toHaveLength(1);
    expect(err.violations[0]!.field).toBe("scopes[1]");
    expect(err.violations[0]!.description).toMatch(/not available to service accounts/);
  });

  it("reports a human-only scope among other problems as a plain invalid field", () => {
    const { v } = check({ label: "", scopes: ["billing:write"] });
    expect(v.map((x) => x.field).sort()).toEqual(["label", "scopes[0]"]);
    expect(v.find((x) => x.field === "scopes[0]")!.description).toMatch(/not available to service accounts/);
  });

  it.each([["projects:create"], ["billing:read"]])("refuses %s together with project_ids", (scope) => {
    const { v } = check({ scopes: ["projects:read", scope], projectIds: ["p1"] });
    expect(v.map((x) => x.field)).toEqual(["scopes"]);
    expect(v[0]!.description).toContain(scope);
    expect(check({ scopes: ["projects:read", scope], projectIds: [] }).v).toEqual([]);
    // Environment restrictions alone are fine.
    expect(check({ scopes: [scope], environments: ["test"] }).v).toEqual([]);
  });
});

describe("checkTokenGrant: project_ids and environments", () => {
  it("accepts 100 distinct project ids, and more entries that collapse to 100", () => {
    const ids = Array.from({ length: 100 }, (_, i) => `p${i}`);
    expect(check({ projectIds: ids }).v).toEqual([]);
    const withDupes = check({ projectIds: [...ids, ...ids.slice(0, 50)] });
    expect(withDupes.v).toEqual([]);
    expect(withDupes.grant.projectIds).toEqual(ids);
  });

  it("refuses 101 distinct project ids", () => {
    const ids = Array.from({ length: 101 }, (_, i) => `p${i}`);
    expect(check({ projectIds: ids }).fields).toEqual(["project_ids"]);
  });

  it.each([[""], ["-p"], ["_p"], ["p 1"], ["p/1"], ["p".repeat(65)], ["prøject"]])("refuses the project id %j", (id) => {
    expect(check({ projectIds: ["ok", id] }).fields).toEqual(["project_ids[1]"]);
  });

  it("accepts a 64-character project id", () => {
    expect(check({ projectIds: ["p".repeat(64)] }).v).toEqual([]);
  });

  it.each([["prod"], ["Test"], [""], ["live "]])("refuses the environment %j", (env) => {
    expect(check({ environments: ["test", env] }).fields).toEqual(["environments[1]"]);
  });
});

describe("checkTokenGrant: expire_time", () => {
  it("refuses a past or present expire_time", () => {
    expect(check({ expireTime: new Date(NOW.getTime() - 1) }).fields).toEqual(["expire_time"]);
    expect(check({ expireTime: new Date(NOW.getTime()) }).fields).toEqual(["expire_time"]);
    expect(check({ expireTime: new Date(0) }).fields).toEqual(["expire_time"]);
  });

  it("accepts a future expire_time", () => {
    const t = new Date(NOW.getTime() + 1);
    expect(check({ expireTime: t }).grant.expireTime).toEqual(t);
  });

  it("refuses an invalid date", () => {
    expect(check({ expireTime: new Date(Number.NaN) }).fields).toEqual(["expire_time"]);
  });
});

describe("checkTokenGrant: reports every bad field at once", () => {
  it("collects all violations", () => {
    const { fields } = check({ label: "", scopes: [], projectIds: ["-"], environments: ["qa"], expireTime: new Date(0) });
    expect(fields.sort()).toEqual(["environments[0]", "expire_time", "label", "project_ids[0]", "scopes"]);
  });
});

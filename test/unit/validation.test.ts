/** Pure validators: shared/validation.ts, service-accounts/rules.ts and shared/actor.ts. */
import { describe, expect, it } from "vitest";
import { ErrorReason } from "../../src/generated/pokerworks/identity/v1/error_reason";
import { checkDescription, checkName, resolveUpdateMask } from "../../src/service-accounts/rules";
import { requireHumanActor } from "../../src/shared/actor";
import { PermissionDeniedError, Violations } from "../../src/shared/errors";
import { charLength, checkOrganizationId, checkResourceId, checkServerId, checkText, dedupe } from "../../src/shared/validation";

function run<T>(fn: (v: Violations) => T): { result: T; fields: string[]; v: Violations } {
  const v = new Violations();
  const result = fn(v);
  return { result, fields: v.list.map((x) => x.field), v };
}

describe("organization and project ids", () => {
  it.each([["a"], ["A"], ["0"], ["org_1"], ["Org-1_x"], ["a".repeat(64)], ["9-_"]])("accepts %j", (id) => {
    expect(run((v) => checkOrganizationId(v, id)).fields).toEqual([]);
  });

  it.each([[""], ["-a"], ["_a"], ["a b"], ["a/b"], ["a.b"], ["a".repeat(65)], ["é"], ["a\n"], [" a"], ["a|b"]])("refuses %j naming the field", (id) => {
    expect(run((v) => checkOrganizationId(v, id)).fields).toEqual(["organization_id"]);
    expect(run((v) => checkResourceId(v, "project_id", id, "project_id")).fields).toEqual(["project_id"]);
  });

  it("says an empty id is required and a bad one must match the pattern", () => {
    expect(run((v) => checkOrganizationId(v, "")).v.list[0]!.description).toMatch(/required/);
    expect(run((v) => checkOrganizationId(v, "-x")).v.list[0]!.description).toContain("^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$");
  });
});

describe("server-assigned ids", () => {
  it("are required, at most 128 printable characters", () => {
    expect(run((v) => checkServerId(v, "token_id", "tok_x")).fields).toEqual([]);
    expect(run((v) => checkServerId(v, "token_id", "")).fields).toEqual(["token_id"]);
    expect(run((v) => checkServerId(v, "token_id", "x".repeat(128))).fields).toEqual([]);
    expect(run((v) => checkServerId(v, "token_id", "x".repeat(129))).fields).toEqual(["token_id"]);
    expect(run((v) => checkServerId(v, "token_id", "a\u0000")).fields).toEqual(["token_id"]);
  });
});

describe("checkText / checkName", () => {
  it("trims and counts code points", () => {
    expect(run((v) => checkText(v, "label", "  ab  ", 1, 100)).result).toBe("ab");
    expect(charLength("🂡🂡")).toBe(2);
    expect(run((v) => checkName(v, "🂡".repeat(100))).fields).toEqual([]);
    expect(run((v) => checkName(v, "🂡".repeat(101))).fields).toEqual(["name"]);
  });

  it("name is 1 to 100 characters after trimming", () => {
    expect(run((v) => checkName(v, "")).fields).toEqual(["name"]);
    expect(run((v) => checkName(v, "   ")).fields).toEqual(["name"]);
    expect(run((v) => checkName(v, "x")).fields).toEqual([]);
    expect(run((v) => checkName(v, "x".repeat(100))).fields).toEqual([]);
    expect(run((v) => checkName(v, ` ${"x".repeat(100)} `)).fields).toEqual([]);
    expect(run((v) => checkName(v, "x".repeat(101))).fields).toEqual(["name"]);
  });

  it("refuses control characters in a name", () => {
    for (const c of ["\u0000", "\n", "\u001b", "\u007f", "\u2028"]) expect(run((v) => checkName(v, `a${c}b`)).fields).toEqual(["name"]);
  });
});

describe("checkDescription", () => {
  it("is at most 500 characters, may be empty, may span lines", () => {
    expect(run((v) => checkDescription(v, "")).fields).toEqual([]);
    expect(run((v) => checkDescription(v, "x".repeat(500))).fields).toEqual([]);
    expect(run((v) => checkDescription(v, "x".repeat(501))).fields).toEqual(["description"]);
    expect(run((v) => checkDescription(v, "line 1\nline 2\tend")).fields).toEqual([]);
    expect(run((v) => checkDescription(v, "bell\u0007")).fields).toEqual(["description"]);
    expect(run((v) => checkDescription(v, "  padded  ")).result).toBe("padded");
  });
});

describe("resolveUpdateMask", () => {
  const mask = (paths: string[] | undefined, name = "", description = "") => {
    const r = run((v) => resolveUpdateMask(v, paths, { name, description }));
    return { fields: [...r.result].sort(), violations: r.fields };
  };

  it("takes name, description and *", () => {
    expect(mask(["name"])).toEqual({ fields: ["name"], violations: [] });
    expect(mask(["description"])).toEqual({ fields: ["description"], violations: [] });
    expect(mask(["name", "description"])).toEqual({ fields: ["description", "name"], violations: [] });
    expect(mask(["*"])).toEqual({ fields: ["description", "name"], violations: [] });
  });

  it("an empty mask means the non-empty fields", () => {
    expect(mask([], "n", "")).toEqual({ fields: ["name"], violations: [] });
    expect(mask(undefined, "", "d")).toEqual({ fields: ["description"], violations: [] });
    expect(mask([], "n", "d")).toEqual({ fields: ["description", "name"], violations: [] });
    expect(mask([], "", "").violations).toEqual(["update_mask"]);
  });

  it("refuses unknown paths", () => {
    expect(mask(["id"]).violations).toEqual(["update_mask"]);
    expect(mask(["name", "status"]).violations).toEqual(["update_mask"]);
    expect(mask(["organization_id"]).violations).toEqual(["update_mask"]);
  });
});

describe("dedupe", () => {
  it("keeps the first occurrence in order", () => {
    expect(dedupe(["b", "a", "b", "c", "a"])).toEqual(["b", "a", "c"]);
    expect(dedupe([])).toEqual([]);
  });
});

describe("requireHumanActor", () => {
  it("requires an actor", () => {
    const r = run((v) => requireHumanActor(v, undefined));
    expect(r.fields).toEqual(["actor"]);
    expect(r.result).toBeUndefined();
    expect(run((v) => requireHumanActor(v, { kind: undefined })).fields).toEqual(["actor"]);
  });

  it("accepts a user and records it", () => {
    const r = run((v) => requireHumanActor(v, { kind: { $case: "userId", value: "user_1" } }));
    expect(r.fields).toEqual([]);
    expect(r.result).toEqual({ kind: "user", id: "user_1" });
  });

  it("refuses an empty, oversized or unprintable user id", () => {
    expect(run((v) => requireHumanActor(v, { kind: { $case: "userId", value: "" } })).fields).toEqual(["actor.user_id"]);
    expect(run((v) => requireHumanActor(v, { kind: { $case: "userId", value: "u".repeat(129) } })).fields).toEqual(["actor.user_id"]);
    expect(run((v) => requireHumanActor(v, { kind: { $case: "userId", value: "u\u0000" } })).fields).toEqual(["actor.user_id"]);
  });

  it("refuses a management token with PERMISSION_DENIED", () => {
    let err: unknown;
    try {
      requireHumanActor(new Violations(), { kind: { $case: "managementToken", value: "tok_1" } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PermissionDeniedError);
    expect((err as PermissionDeniedError).reason).toBe(ErrorReason.ERROR_REASON_MANAGEMENT_TOKEN_NOT_ALLOWED);
  });
});

/** Validation of token issuance requests against the product rules. Pure: no I/O. */
import { ErrorReason } from "../generated/pokerworks/identity/v1/error_reason";
import { InvalidArgumentError, Violations } from "../shared/errors";
import { ACCOUNT_LEVEL_SCOPES_FOR_PROJECT_RESTRICTED, isEnvironment, isHumanOnlyAction, isLaunchScope, LAUNCH_SCOPES } from "../shared/scopes";
import { checkText, dedupe, hasControlChars, RESOURCE_ID_PATTERN } from "../shared/validation";

export const LABEL_MAX = 100;
export const MAX_PROJECT_IDS = 100;
export const MAX_ACTIVE_TOKENS_PER_SERVICE_ACCOUNT = 50;
/** Beyond this many entries a repeated field is refused before looking at its values. */
const MAX_REPEATED_ENTRIES = 1000;
/** The largest instant a google.protobuf.Timestamp can hold: 9999-12-31T23:59:59Z. */
export const MAX_TIMESTAMP = new Date("9999-12-31T23:59:59.999Z");

export interface TokenGrant {
  label: string;
  scopes: string[];
  projectIds: string[];
  environments: string[];
  expireTime: Date | null;
}

export interface TokenGrantInput {
  label: string;
  scopes: string[];
  projectIds: string[];
  environments: string[];
  expireTime?: Date | undefined;
}

/** Each distinct value with the index of its first occurrence in the request (for field paths). */
function firstIndexes(values: readonly string[]): Map<string, number> {
  const first = new Map<string, number>();
  values.forEach((value, i) => {
    if (!first.has(value)) first.set(value, i);
  });
  return first;
}

const quote = (s: string) => `'${hasControlChars(s) ? JSON.stringify(s).slice(1, -1) : s.slice(0, 64)}'`;

/**
 * Checks label, scopes, restrictions and expiry. Human-only scopes are reported with
 * ERROR_REASON_SCOPE_NOT_AVAILABLE_TO_SERVICE_ACCOUNTS when they are the only problem.
 */
export function checkTokenGrant(v: Violations, input: TokenGrantInput, now: Date): TokenGrant {
  const label = checkText(v, "label", input.label, 1, LABEL_MAX);
  let humanOnly = 0;

  const scopes = dedupe(input.scopes);
  if (input.scopes.length > MAX_REPEATED_ENTRIES) v.add("scopes", `scopes must have at most ${LAUNCH_SCOPES.length} distinct entries`);
  else if (scopes.length === 0) v.add("scopes", `at least one scope is required; valid scopes are ${LAUNCH_SCOPES.join(", ")}`);
  else
    firstIndexes(input.scopes).forEach((i, scope) => {
      if (isLaunchScope(scope)) return;
      if (isHumanOnlyAction(scope)) {
        humanOnly++;
        v.add(`scopes[${i}]`, `${quote(scope)} is a money-moving or account-admin action that is not available to service accounts`);
      } else v.add(`scopes[${i}]`, `${quote(scope)} is not a scope; valid scopes are ${LAUNCH_SCOPES.join(", ")}`);
    });

  const projectIds = dedupe(input.projectIds);
  if (input.projectIds.length > MAX_REPEATED_ENTRIES || projectIds.length > MAX_PROJECT_IDS)
    v.add("project_ids", `project_ids must have at most ${MAX_PROJECT_IDS} distinct entries`);
  else
    firstIndexes(input.projectIds).forEach((i, id) => {
      if (!RESOURCE_ID_PATTERN.test(id)) v.add(`project_ids[${i}]`, `${quote(id)} is not a project id: it must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`);
    });

  const environments = dedupe(input.environments);
  if (input.environments.length > MAX_REPEATED_ENTRIES) v.add("environments", "environments may only contain 'test' and 'live'");
  else
    firstIndexes(input.environments).forEach((i, env) => {
      if (!isEnvironment(env)) v.add(`environments[${i}]`, `${quote(env)} is not an environment; use 'test' or 'live'`);
    });

  if (projectIds.length > 0) {
    for (const scope of ACCOUNT_LEVEL_SCOPES_FOR_PROJECT_RESTRICTED) {
      if (scopes.includes(scope))
        v.add("scopes", `'${scope}' can't be combined with project_ids: a project-restricted token could never use it`);
    }
  }

  const expireTime = input.expireTime ?? null;
  if (expireTime !== null) {
    if (Number.isNaN(expireTime.getTime()) || expireTime > MAX_TIMESTAMP) v.add("expire_time", "expire_time must be a valid timestamp no later than 9999-12-31T23:59:59Z");
    else if (expireTime <= now) v.add("expire_time", `expire_time must be in the future (it is ${expireTime.toISOString()}, now is ${now.toISOString()})`);
  }

  if (v.list.length > 0 && v.list.length === humanOnly) throw new InvalidArgumentError(v.list, ErrorReason.ERROR_REASON_SCOPE_NOT_AVAILABLE_TO_SERVICE_ACCOUNTS);
  return { label, scopes, projectIds, environments, expireTime };
}

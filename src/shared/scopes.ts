/** The product page's scopes. Pure data; shared by token issuance and Authorize. */

/** The launch set of scopes a management token may hold. */
export const LAUNCH_SCOPES = [
  "org:read",
  "projects:read",
  "projects:create",
  "projects:update",
  "api_keys:read",
  "api_keys:create",
  "api_keys:revoke",
  "usage:read",
  "billing:read",
  "audit_log:read",
] as const;
export type Scope = (typeof LAUNCH_SCOPES)[number];

/**
 * Money-moving and account-admin actions: available to people only, never to service
 * accounts. Refused at issuance and always denied by Authorize.
 */
export const HUMAN_ONLY_ACTIONS = [
  "billing:write",
  "credit_packs:purchase",
  "auto_recharge:update",
  "members:manage",
  "org:update",
  "org:delete",
  "service_accounts:manage",
  "management_tokens:create",
] as const;

export const ENVIRONMENTS = ["test", "live"] as const;
export type Environment = (typeof ENVIRONMENTS)[number];

const launch = new Set<string>(LAUNCH_SCOPES);
const humanOnly = new Set<string>(HUMAN_ONLY_ACTIONS);
const environments = new Set<string>(ENVIRONMENTS);

export const isLaunchScope = (s: string): s is Scope => launch.has(s);
export const isHumanOnlyAction = (s: string): boolean => humanOnly.has(s);
export const isEnvironment = (s: string): s is Environment => environments.has(s);

/** Scopes that act on the whole account and so can't be used by a project-restricted token. */
export const ACCOUNT_LEVEL_SCOPES_FOR_PROJECT_RESTRICTED: readonly Scope[] = ["projects:create", "billing:read"];

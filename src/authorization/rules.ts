/**
 * How Authorize decides, as pure functions (no I/O). The first rule that matches wins, in
 * the order of DecisionReason. Steps 1-3 (product key, malformed, unknown) are decided
 * before a token record exists; `decideForRecord` covers steps 4-11.
 */
import { DecisionReason } from "../generated/pokerworks/identity/v1/authorization_service";
import { isHumanOnlyAction } from "../shared/scopes";

/** What Authorize knows about an identified token. */
export interface TokenRecord {
  tokenId: string;
  organizationId: string;
  serviceAccountId: string;
  scopes: readonly string[];
  projectIds: readonly string[];
  environments: readonly string[];
  /** Milliseconds since the epoch; null when the token never expires. */
  expireTimeMs: number | null;
  tokenRevoked: boolean;
  serviceAccountRevoked: boolean;
  /** Set when the token was rotated: the token that replaces it ("" otherwise). */
  supersededByTokenId: string;
  /** The change marker this record was re-read for (rotation), if any. */
  changeSeen?: string;
}

export interface AuthorizeQuery {
  scope: string;
  projectId: string;
  environment: string;
  organizationId: string;
}

export interface Decision {
  reason: DecisionReason;
  message: string;
}

const decision = (reason: DecisionReason, message: string): Decision => ({ reason, message });

export const PRODUCT_KEY = decision(
  DecisionReason.DECISION_REASON_PRODUCT_KEY_NOT_ACCEPTED,
  "Product API keys (pw_test_/pw_live_) call the calculation API and can't manage the console; use a management token.",
);
export const MALFORMED = decision(
  DecisionReason.DECISION_REASON_TOKEN_MALFORMED,
  "The credential is not a well-formed management token (pw_mgmt_ prefix, length, alphabet and checksum).",
);
export const UNKNOWN = decision(DecisionReason.DECISION_REASON_TOKEN_UNKNOWN, "No such management token was ever issued.");

export function decideForRecord(r: TokenRecord, q: AuthorizeQuery, nowMs: number): Decision {
  if (r.serviceAccountRevoked)
    return decision(DecisionReason.DECISION_REASON_SERVICE_ACCOUNT_REVOKED, `The token's service account ${r.serviceAccountId} is revoked.`);
  if (r.tokenRevoked) return decision(DecisionReason.DECISION_REASON_TOKEN_REVOKED, `Token ${r.tokenId} is revoked.`);
  if (r.expireTimeMs !== null && nowMs >= r.expireTimeMs)
    return decision(DecisionReason.DECISION_REASON_TOKEN_EXPIRED, `Token ${r.tokenId} expired at ${new Date(r.expireTimeMs).toISOString()}.`);
  if (q.organizationId !== "" && q.organizationId !== r.organizationId)
    return decision(DecisionReason.DECISION_REASON_ORGANIZATION_MISMATCH, `Token ${r.tokenId} belongs to another organization than the one requested.`);
  if (isHumanOnlyAction(q.scope))
    return decision(
      DecisionReason.DECISION_REASON_NOT_AVAILABLE_TO_SERVICE_ACCOUNTS,
      `'${q.scope}' is a money-moving or account-admin action that is not available to service accounts.`,
    );
  if (!r.scopes.includes(q.scope)) return decision(DecisionReason.DECISION_REASON_SCOPE_NOT_GRANTED, `Token ${r.tokenId} does not hold the scope '${q.scope}'.`);
  if (q.environment !== "" && r.environments.length > 0 && !r.environments.includes(q.environment))
    return decision(DecisionReason.DECISION_REASON_ENVIRONMENT_NOT_ALLOWED, `Token ${r.tokenId} is restricted to environments other than '${q.environment}'.`);
  if (q.projectId !== "" && r.projectIds.length > 0 && !r.projectIds.includes(q.projectId))
    return decision(DecisionReason.DECISION_REASON_PROJECT_NOT_ALLOWED, `Token ${r.tokenId} is restricted to projects other than '${q.projectId}'.`);
  const projectRestricted = r.projectIds.length > 0;
  if ((q.scope === "billing:read" || q.scope === "projects:create") && projectRestricted)
    return decision(
      DecisionReason.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED,
      `'${q.scope}' acts on the whole account, and token ${r.tokenId} is restricted to specific projects.`,
    );
  if (q.scope === "audit_log:read" && q.projectId === "" && (projectRestricted || r.environments.length > 0))
    return decision(
      DecisionReason.DECISION_REASON_ACCOUNT_LEVEL_NOT_ALLOWED,
      `Account-level audit events can't be read by token ${r.tokenId}, which has project or environment restrictions; name a project.`,
    );
  return decision(DecisionReason.DECISION_REASON_ALLOWED, `Token ${r.tokenId} may use '${q.scope}'.`);
}

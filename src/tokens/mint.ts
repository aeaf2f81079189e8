/**
 * Minting a token inside the caller's transaction: the one place that checks the service
 * account, the per-account limit and the organization's token policy, creates the secret and
 * stores only its hash. Used by CreateToken and RotateToken.
 */
import type { EntityManager } from "@mikro-orm/postgresql";
import { ErrorReason } from "../generated/pokerworks/identity/v1/error_reason";
import { serviceAccountNotFound } from "../service-accounts/errors";
import { findServiceAccount } from "../service-accounts/store";
import type { ActorRecord } from "../shared/actor";
import { FailedPreconditionError, ResourceExhaustedError } from "../shared/errors";
import { newId } from "../shared/ids";
import { enforceTokenPolicy } from "../token-policies/rules";
import { tokenPolicyRule } from "../token-policies/store";
import { TokenEntity } from "./entity";
import { MAX_ACTIVE_TOKENS_PER_SERVICE_ACCOUNT, type TokenGrant } from "./rules";
import { countActiveTokens } from "./store";
import { displayPrefix, generateToken, hashToken, lastFour } from "./token-format";

export interface Minted {
  token: TokenEntity;
  /** Only ever returned to the caller of CreateToken/RotateToken; never stored or logged. */
  secret: string;
}

export async function mintToken(
  tx: EntityManager,
  q: { organizationId: string; serviceAccountId: string; grant: TokenGrant; actor: ActorRecord; now: () => Date; replacesTokenId?: string },
): Promise<Minted> {
  // Lock the account row: a concurrent RevokeServiceAccount either commits first (and we see
  // it revoked) or waits for this token and revokes it with the others.
  const sa = await findServiceAccount(tx, q.organizationId, q.serviceAccountId, true);
  if (!sa) throw serviceAccountNotFound();
  if (sa.status === "revoked")
    throw new FailedPreconditionError(ErrorReason.ERROR_REASON_SERVICE_ACCOUNT_REVOKED, "The service account is revoked and can't get new tokens");
  // Read the clock only once the lock is held, so create_time follows commit order.
  const at = q.now();
  enforceTokenPolicy(await tokenPolicyRule(tx, sa.organizationId), q.grant.expireTime, at);
  // A token being rotated out does not count: rotation never needs a free slot.
  const active = (await countActiveTokens(tx, [sa.id], at, { excludeSuperseded: true })).get(sa.id) ?? 0;
  if (active >= MAX_ACTIVE_TOKENS_PER_SERVICE_ACCOUNT + (q.replacesTokenId ? 1 : 0))
    throw new ResourceExhaustedError(
      ErrorReason.ERROR_REASON_TOKEN_LIMIT_REACHED,
      `The service account already has ${MAX_ACTIVE_TOKENS_PER_SERVICE_ACCOUNT} active tokens, the maximum; revoke one first`,
    );
  const secret = generateToken();
  const token = Object.assign(new TokenEntity(), {
    id: newId("tok"),
    organizationId: sa.organizationId,
    serviceAccountId: sa.id,
    label: q.grant.label,
    secretHash: hashToken(secret),
    prefix: displayPrefix(secret),
    lastFour: lastFour(secret),
    scopes: q.grant.scopes,
    projectIds: q.grant.projectIds,
    environments: q.grant.environments,
    status: "active" as const,
    expireTime: q.grant.expireTime,
    createTime: at,
    replacesTokenId: q.replacesTokenId ?? null,
    createdByKind: q.actor.kind,
    createdById: q.actor.id,
  });
  tx.persist(token);
  return { token, secret };
}

/** What an audit event says of a token (never its secret). */
export function tokenAuditDetails(token: TokenEntity): Record<string, unknown> {
  return {
    service_account_id: token.serviceAccountId,
    label: token.label,
    prefix: token.prefix,
    scopes: token.scopes,
    project_ids: token.projectIds,
    environments: token.environments,
    expire_time: token.expireTime?.toISOString() ?? null,
  };
}

/** The one place a TokenEntity becomes a proto message. It has no secret to give. */
import { type Token, TokenStatus } from "../generated/pokerworks/identity/v1/token";
import { actorToProto } from "../shared/actor";
import type { TokenEntity } from "./entity";
import { masked } from "./token-format";

/** Revocation takes precedence over expiry; expiry is exact (expired at expire_time). */
export function tokenStatus(e: Pick<TokenEntity, "status" | "expireTime">, now: Date): TokenStatus {
  if (e.status === "revoked") return TokenStatus.TOKEN_STATUS_REVOKED;
  if (e.expireTime !== null && e.expireTime.getTime() <= now.getTime()) return TokenStatus.TOKEN_STATUS_EXPIRED;
  return TokenStatus.TOKEN_STATUS_ACTIVE;
}

export function toTokenProto(e: TokenEntity, now: Date): Token {
  return {
    id: e.id,
    organizationId: e.organizationId,
    serviceAccountId: e.serviceAccountId,
    label: e.label,
    prefix: e.prefix,
    masked: masked(e.prefix, e.lastFour),
    status: tokenStatus(e, now),
    scopes: [...e.scopes],
    projectIds: [...e.projectIds],
    environments: [...e.environments],
    expireTime: e.expireTime ?? undefined,
    createTime: e.createTime,
    revokeTime: e.revokeTime ?? undefined,
    lastUsedTime: e.lastUsedTime ?? undefined,
    createdBy: actorToProto(e.createdByKind, e.createdById),
    supersededByTokenId: e.supersededByTokenId ?? "",
    replacesTokenId: e.replacesTokenId ?? "",
    lastUsedCaller: e.lastUsedCaller ?? "",
    lastUsedScope: e.lastUsedScope ?? "",
  };
}

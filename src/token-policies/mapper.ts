/** The one place a TokenPolicyEntity becomes a proto message. */
import type { TokenPolicy } from "../generated/pokerworks/identity/v1/organization_policy_service";
import { actorToProto } from "../shared/actor";
import type { TokenPolicyEntity } from "./entity";

export function toTokenPolicyProto(organizationId: string, e: TokenPolicyEntity | null): TokenPolicy {
  return {
    organizationId,
    maxTokenLifetime: e?.maxTokenLifetimeSeconds != null ? { seconds: Number(e.maxTokenLifetimeSeconds), nanos: 0 } : undefined,
    requireExpiry: e?.requireExpiry ?? false,
    updateTime: e?.updateTime,
    updatedBy: e ? actorToProto(e.updatedByKind, e.updatedById) : undefined,
  };
}

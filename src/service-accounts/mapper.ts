/** The one place a ServiceAccountEntity becomes a proto message. */
import type { ServiceAccount } from "../generated/pokerworks/identity/v1/service_account";
import { ServiceAccountStatus } from "../generated/pokerworks/identity/v1/service_account";
import { actorToProto } from "../shared/actor";
import type { ServiceAccountEntity } from "./entity";

export function toServiceAccountProto(e: ServiceAccountEntity, activeTokenCount: number): ServiceAccount {
  return {
    id: e.id,
    organizationId: e.organizationId,
    name: e.name,
    description: e.description,
    status: e.status === "revoked" ? ServiceAccountStatus.SERVICE_ACCOUNT_STATUS_REVOKED : ServiceAccountStatus.SERVICE_ACCOUNT_STATUS_ACTIVE,
    activeTokenCount: e.status === "revoked" ? 0 : activeTokenCount,
    createdBy: actorToProto(e.createdByKind, e.createdById),
    createTime: e.createTime,
    updateTime: e.updateTime,
    revokeTime: e.revokeTime ?? undefined,
  };
}

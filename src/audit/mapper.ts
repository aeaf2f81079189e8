/** The one place an AuditEventEntity becomes a proto message. */
import type { AuditEvent } from "../generated/pokerworks/identity/v1/audit_event";
import { actorToProto } from "../shared/actor";
import type { AuditEventEntity } from "./entity";

export function toAuditEventProto(e: AuditEventEntity): AuditEvent {
  return {
    id: e.id,
    organizationId: e.organizationId,
    projectIds: [...e.projectIds],
    action: e.action,
    actor: actorToProto(e.actorKind, e.actorId),
    targetType: e.targetType,
    targetId: e.targetId,
    occurTime: e.occurTime,
    details: e.details,
  };
}

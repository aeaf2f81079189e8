/** Writes audit events inside the caller's transaction, so a mutation and its event commit together. */
import type { EntityManager } from "@mikro-orm/postgresql";
import type { ActorRecord } from "../shared/actor";
import { newId } from "../shared/ids";
import { type AuditAction, AuditEventEntity, type AuditTargetType } from "./entity";

export interface AuditEntry {
  organizationId: string;
  projectIds?: string[];
  action: AuditAction;
  actor: ActorRecord;
  targetType: AuditTargetType;
  targetId: string;
  occurTime: Date;
  /** Never a secret. */
  details: Record<string, unknown>;
}

export function recordAuditEvent(em: EntityManager, entry: AuditEntry): AuditEventEntity {
  const event = em.create(AuditEventEntity, {
    id: newId("evt"),
    organizationId: entry.organizationId,
    projectIds: entry.projectIds ?? [],
    action: entry.action,
    actorKind: entry.actor.kind,
    actorId: entry.actor.id,
    targetType: entry.targetType,
    targetId: entry.targetId,
    occurTime: entry.occurTime,
    details: entry.details,
  } as AuditEventEntity);
  em.persist(event);
  return event;
}

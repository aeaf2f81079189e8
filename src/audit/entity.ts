import { ArrayType, EntitySchema } from "@mikro-orm/core";

export type AuditAction =
  | "service_account.created"
  | "service_account.updated"
  | "service_account.revoked"
  | "token.created"
  | "token.revoked"
  | "token.rotated"
  | "token.leaked"
  | "token_policy.updated";
export type AuditTargetType = "service_account" | "token" | "organization";

export class AuditEventEntity {
  id!: string;
  seq!: string;
  organizationId!: string;
  projectIds!: string[];
  action!: AuditAction;
  actorKind!: string;
  actorId!: string;
  targetType!: AuditTargetType;
  targetId!: string;
  occurTime!: Date;
  details!: Record<string, unknown>;
}

export const AuditEventSchema = new EntitySchema<AuditEventEntity>({
  class: AuditEventEntity,
  tableName: "audit_events",
  properties: {
    id: { type: "text", primary: true },
    seq: { type: "bigint", generated: "by default as identity" },
    organizationId: { type: "text" },
    projectIds: { type: ArrayType, columnType: "text[]" },
    action: { type: "text" },
    actorKind: { type: "text" },
    actorId: { type: "text" },
    targetType: { type: "text" },
    targetId: { type: "text" },
    occurTime: { type: "Date", columnType: "timestamptz" },
    details: { type: "json", columnType: "jsonb" },
  },
});

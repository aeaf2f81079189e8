import { EntitySchema } from "@mikro-orm/core";

export type ServiceAccountStatusValue = "active" | "revoked";

export class ServiceAccountEntity {
  id!: string;
  /** Insertion order; the stable key behind pagination. Assigned by PostgreSQL. */
  seq!: string;
  organizationId!: string;
  name!: string;
  description!: string;
  status!: ServiceAccountStatusValue;
  createdByKind!: string;
  createdById!: string;
  createTime!: Date;
  updateTime!: Date;
  revokeTime: Date | null = null;
}

export const ServiceAccountSchema = new EntitySchema<ServiceAccountEntity>({
  class: ServiceAccountEntity,
  tableName: "service_accounts",
  properties: {
    id: { type: "text", primary: true },
    seq: { type: "bigint", generated: "by default as identity" },
    organizationId: { type: "text" },
    name: { type: "text" },
    description: { type: "text" },
    status: { type: "text" },
    createdByKind: { type: "text" },
    createdById: { type: "text" },
    createTime: { type: "Date", columnType: "timestamptz" },
    updateTime: { type: "Date", columnType: "timestamptz" },
    revokeTime: { type: "Date", columnType: "timestamptz", nullable: true },
  },
});

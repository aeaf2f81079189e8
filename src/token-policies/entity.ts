import { EntitySchema } from "@mikro-orm/core";

export class TokenPolicyEntity {
  organizationId!: string;
  /** Null: no maximum. */
  maxTokenLifetimeSeconds: string | null = null;
  requireExpiry!: boolean;
  updateTime!: Date;
  updatedByKind!: string;
  updatedById!: string;
}

export const TokenPolicySchema = new EntitySchema<TokenPolicyEntity>({
  class: TokenPolicyEntity,
  tableName: "token_policies",
  properties: {
    organizationId: { type: "text", primary: true },
    maxTokenLifetimeSeconds: { type: "bigint", nullable: true },
    requireExpiry: { type: "boolean" },
    updateTime: { type: "Date", columnType: "timestamptz" },
    updatedByKind: { type: "text" },
    updatedById: { type: "text" },
  },
});

import { ArrayType, EntitySchema } from "@mikro-orm/core";

export type TokenStatusValue = "active" | "revoked";

export class TokenEntity {
  id!: string;
  /** Insertion order; the stable key behind pagination. Assigned by PostgreSQL. */
  seq!: string;
  organizationId!: string;
  serviceAccountId!: string;
  label!: string;
  /** SHA-256 of the secret. The secret itself is never stored. */
  secretHash!: Buffer;
  prefix!: string;
  lastFour!: string;
  scopes!: string[];
  projectIds!: string[];
  environments!: string[];
  status!: TokenStatusValue;
  expireTime: Date | null = null;
  createTime!: Date;
  revokeTime: Date | null = null;
  lastUsedTime: Date | null = null;
  lastUsedCaller: string | null = null;
  lastUsedScope: string | null = null;
  /** Set by rotation: the token that replaces this one. */
  supersededByTokenId: string | null = null;
  /** Set on a token minted by rotation: the token it replaces. */
  replacesTokenId: string | null = null;
  createdByKind!: string;
  createdById!: string;
}

export const TokenSchema = new EntitySchema<TokenEntity>({
  class: TokenEntity,
  tableName: "tokens",
  properties: {
    id: { type: "text", primary: true },
    seq: { type: "bigint", generated: "by default as identity" },
    organizationId: { type: "text" },
    serviceAccountId: { type: "text" },
    label: { type: "text" },
    secretHash: { type: "Buffer", columnType: "bytea", lazy: true },
    prefix: { type: "text" },
    lastFour: { type: "text" },
    scopes: { type: ArrayType, columnType: "text[]" },
    projectIds: { type: ArrayType, columnType: "text[]" },
    environments: { type: ArrayType, columnType: "text[]" },
    status: { type: "text" },
    expireTime: { type: "Date", columnType: "timestamptz", nullable: true },
    createTime: { type: "Date", columnType: "timestamptz" },
    revokeTime: { type: "Date", columnType: "timestamptz", nullable: true },
    lastUsedTime: { type: "Date", columnType: "timestamptz", nullable: true },
    lastUsedCaller: { type: "text", nullable: true },
    lastUsedScope: { type: "text", nullable: true },
    supersededByTokenId: { type: "text", nullable: true },
    replacesTokenId: { type: "text", nullable: true },
    createdByKind: { type: "text" },
    createdById: { type: "text" },
  },
});

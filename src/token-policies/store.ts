/** PostgreSQL access for organization token policies. */
import type { EntityManager } from "@mikro-orm/postgresql";
import { TokenPolicyEntity } from "./entity";
import { DEFAULT_POLICY, type TokenPolicyRule } from "./rules";

export async function findTokenPolicy(em: EntityManager, organizationId: string): Promise<TokenPolicyEntity | null> {
  return em.findOne(TokenPolicyEntity, { organizationId });
}

export function ruleOf(entity: TokenPolicyEntity | null): TokenPolicyRule {
  if (!entity) return DEFAULT_POLICY;
  return { maxTokenLifetimeSeconds: entity.maxTokenLifetimeSeconds === null ? null : Number(entity.maxTokenLifetimeSeconds), requireExpiry: entity.requireExpiry };
}

export async function tokenPolicyRule(em: EntityManager, organizationId: string): Promise<TokenPolicyRule> {
  return ruleOf(await findTokenPolicy(em, organizationId));
}

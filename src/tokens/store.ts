/** PostgreSQL access for tokens. Every function takes the call's EntityManager. */
import { LockMode } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { TokenEntity } from "./entity";

export async function findToken(em: EntityManager, organizationId: string, id: string, lock = false): Promise<TokenEntity | null> {
  return em.findOne(TokenEntity, { id, organizationId }, lock ? { lockMode: LockMode.PESSIMISTIC_WRITE } : {});
}

/** Active (neither revoked nor expired at `now`) token counts per service account. */
export async function countActiveTokens(
  em: EntityManager,
  serviceAccountIds: string[],
  now: Date,
  options: { excludeSuperseded?: boolean } = {},
): Promise<Map<string, number>> {
  const counts = new Map<string, number>(serviceAccountIds.map((id) => [id, 0]));
  if (serviceAccountIds.length === 0) return counts;
  const rows = await em.execute<{ service_account_id: string; n: string }[]>(
    `select service_account_id, count(*) as n from tokens
      where service_account_id in (select jsonb_array_elements_text(?::jsonb)) and status = 'active' and (expire_time is null or expire_time > ?)
        ${options.excludeSuperseded ? "and superseded_by_token_id is null" : ""}
      group by service_account_id`,
    [JSON.stringify(serviceAccountIds), now],
  );
  for (const row of rows) counts.set(row.service_account_id, Number(row.n));
  return counts;
}

/**
 * Revokes every token of a service account that is not revoked yet, expired ones included (a
 * revoked account leaves no `active` row behind, and revocation takes precedence over expiry);
 * returns the ids of those that were active (unexpired) until now.
 */
export async function revokeActiveTokensOf(em: EntityManager, serviceAccountId: string, at: Date): Promise<string[]> {
  const rows = await em.execute<{ id: string; was_active: boolean }[]>(
    `update tokens set status = 'revoked', revoke_time = ?
      where service_account_id = ? and status = 'active'
      returning id, (expire_time is null or expire_time > ?) as was_active`,
    [at, serviceAccountId, at],
  );
  return rows.filter((r) => r.was_active).map((r) => r.id);
}

export async function listTokens(
  em: EntityManager,
  q: { organizationId: string; serviceAccountId?: string; includeInactive: boolean; now: Date; afterSeq?: string; limit: number },
): Promise<TokenEntity[]> {
  return em.find(
    TokenEntity,
    {
      organizationId: q.organizationId,
      ...(q.serviceAccountId ? { serviceAccountId: q.serviceAccountId } : {}),
      ...(q.includeInactive ? {} : { status: "active" as const, $or: [{ expireTime: null }, { expireTime: { $gt: q.now } }] }),
      ...(q.afterSeq ? { seq: { $gt: q.afterSeq } } : {}),
    },
    { orderBy: { seq: "asc" }, limit: q.limit },
  );
}

/** PostgreSQL access for service accounts. Every function takes the call's EntityManager. */
import { LockMode } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { ServiceAccountEntity } from "./entity";

export async function findServiceAccount(em: EntityManager, organizationId: string, id: string, lock = false): Promise<ServiceAccountEntity | null> {
  return em.findOne(ServiceAccountEntity, { id, organizationId }, lock ? { lockMode: LockMode.PESSIMISTIC_WRITE } : {});
}

export async function findActiveByName(em: EntityManager, organizationId: string, name: string): Promise<ServiceAccountEntity | null> {
  return em.findOne(ServiceAccountEntity, { organizationId, name, status: "active" });
}

export async function listServiceAccounts(
  em: EntityManager,
  q: { organizationId: string; includeRevoked: boolean; afterSeq?: string; limit: number },
): Promise<ServiceAccountEntity[]> {
  return em.find(
    ServiceAccountEntity,
    {
      organizationId: q.organizationId,
      ...(q.includeRevoked ? {} : { status: "active" as const }),
      ...(q.afterSeq ? { seq: { $gt: q.afterSeq } } : {}),
    },
    { orderBy: { seq: "asc" }, limit: q.limit },
  );
}

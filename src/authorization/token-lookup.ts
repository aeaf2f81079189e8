/** Reads a token record by the SHA-256 of its secret: one indexed query, no ORM hydration. */
import type { MikroORM } from "@mikro-orm/postgresql";
import type { TokenRecord } from "./rules";

interface Row {
  id: string;
  organization_id: string;
  service_account_id: string;
  scopes: string[];
  project_ids: string[];
  environments: string[];
  status: string;
  expire_time: Date | null;
  sa_status: string;
  superseded_by_token_id: string | null;
}

const SQL = `select t.id, t.organization_id, t.service_account_id, t.scopes, t.project_ids, t.environments,
                    t.status, t.expire_time, t.superseded_by_token_id, s.status as sa_status
               from tokens t join service_accounts s on s.id = t.service_account_id
              where t.secret_hash = ?`;

export type TokenLookup = (secretHash: Buffer) => Promise<TokenRecord | null>;

export function postgresTokenLookup(orm: MikroORM): TokenLookup {
  const connection = orm.em.getConnection();
  return async (secretHash) => {
    const rows = await connection.execute<Row[]>(SQL, [secretHash]);
    const row = rows[0];
    if (!row) return null;
    return {
      tokenId: row.id,
      organizationId: row.organization_id,
      serviceAccountId: row.service_account_id,
      scopes: row.scopes,
      projectIds: row.project_ids,
      environments: row.environments,
      expireTimeMs: row.expire_time ? new Date(row.expire_time).getTime() : null,
      tokenRevoked: row.status === "revoked",
      serviceAccountRevoked: row.sa_status === "revoked",
      supersededByTokenId: row.superseded_by_token_id ?? "",
    };
  };
}

/** Ids revoked since `since`, for rebuilding the revocation markers after Redis lost them. */
export async function recentRevocations(orm: MikroORM, since: Date): Promise<{ tokenIds: string[]; serviceAccountIds: string[] }> {
  const connection = orm.em.getConnection();
  const tokens = await connection.execute<{ id: string }[]>(`select id from tokens where status = 'revoked' and revoke_time >= ?`, [since]);
  const accounts = await connection.execute<{ id: string }[]>(`select id from service_accounts where status = 'revoked' and revoke_time >= ?`, [since]);
  return { tokenIds: tokens.map((r) => r.id), serviceAccountIds: accounts.map((r) => r.id) };
}

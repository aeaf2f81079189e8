/**
 * What is stored, for the reliability suite: row counts and a digest of every table, read
 * with one query on one connection, to prove that a refused request wrote nothing.
 */
import { Client as PgClient } from "pg";

export interface Snapshot {
  serviceAccounts: number;
  tokens: number;
  auditEvents: number;
  /** md5 over every row of the three tables (tokens without last_used_time, which Authorize batches in). */
  digest: string;
}

const SNAPSHOT_SQL = `
  select (select count(*) from service_accounts)::int as service_accounts,
         (select count(*) from tokens)::int as tokens,
         (select count(*) from audit_events)::int as audit_events,
         md5(coalesce((select string_agg(s::text, '|' order by s.id) from service_accounts s), '') || '#' ||
             coalesce((select string_agg(row(t.id, t.organization_id, t.service_account_id, t.label, t.secret_hash, t.prefix, t.last_four,
                                              t.scopes, t.project_ids, t.environments, t.status, t.expire_time, t.create_time, t.revoke_time,
                                              t.created_by_kind, t.created_by_id)::text, '|' order by t.id) from tokens t), '') || '#' ||
             coalesce((select string_agg(a::text, '|' order by a.id) from audit_events a), '')) as digest`;

export class DbWatch {
  private constructor(private readonly client: PgClient) {}

  static async open(url: string): Promise<DbWatch> {
    const client = new PgClient({ connectionString: url });
    await client.connect();
    return new DbWatch(client);
  }

  async snapshot(): Promise<Snapshot> {
    const row = (await this.client.query(SNAPSHOT_SQL)).rows[0] as { service_accounts: number; tokens: number; audit_events: number; digest: string };
    return { serviceAccounts: row.service_accounts, tokens: row.tokens, auditEvents: row.audit_events, digest: row.digest };
  }

  query<T = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> {
    return this.client.query(text, params).then((r) => r.rows as T[]);
  }

  close(): Promise<void> {
    return this.client.end();
  }
}

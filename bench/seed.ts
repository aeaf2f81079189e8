/**
 * Benchmark databases: a fresh database per run on the shared PostgreSQL, the service's own
 * migrations, and bulk seeding straight into PostgreSQL (multi-row INSERT ... SELECT FROM
 * unnest of arrays, tens of thousands of rows per statement). Tokens are real: made with
 * generateToken and stored as hashToken, exactly as CreateToken stores them, so Authorize
 * finds them.
 */
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { Client } from "pg";
import { migrate, openOrm } from "../src/db/orm";
import { newId } from "../src/shared/ids";
import { displayPrefix, generateToken, hashToken, lastFour } from "../src/tokens/token-format";

import { BENCH_ORG, SEED_SCOPES } from "./common";

export { BENCH_ORG };
/** CreateToken refuses more than this many active tokens per service account. */
const TOKENS_PER_ACCOUNT = 50;
const BATCH = 20_000;

export interface BenchDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createBenchDatabase(adminUrl: string): Promise<BenchDatabase> {
  const name = `pw_bench_${randomBytes(6).toString("hex")}`;
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const orm = await openOrm({ url: url.toString(), poolMax: 1, timeoutMs: 10_000 });
  try {
    // migrate(orm, url) serialises replicas on an advisory lock; older trees take (orm) only.
    await (migrate as (orm: unknown, url?: string) => Promise<string[]>)(orm, url.toString());
  } finally {
    await orm.close(true);
  }
  return {
    name,
    url: url.toString(),
    async drop() {
      const c = new Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

export interface SeededTokens {
  /** Secrets, in insertion order. Kept in memory of the orchestrator and written to a 0600 file for the load generators. */
  secrets: string[];
  ids: string[];
  serviceAccountIds: string[];
}

/** A growable set of seeded tokens; `grow(n)` inserts until the database holds n seeded tokens. */
export class Seeder {
  readonly tokens: SeededTokens = { secrets: [], ids: [], serviceAccountIds: [] };
  private accountsMade = 0;
  private readonly accountIds: string[] = [];

  constructor(private readonly url: string) {}

  get count(): number {
    return this.tokens.ids.length;
  }

  async grow(target: number): Promise<{ inserted: number; seconds: number }> {
    const started = process.hrtime.bigint();
    const client = new Client({ connectionString: this.url });
    await client.connect();
    let inserted = 0;
    try {
      const now = new Date();
      while (this.count < target) {
        const n = Math.min(BATCH, target - this.count);
        // Service accounts first: TOKENS_PER_ACCOUNT tokens each (the most CreateToken allows).
        const accountsNeeded = Math.ceil((this.count + n) / TOKENS_PER_ACCOUNT) - this.accountsMade;
        if (accountsNeeded > 0) {
          const ids = Array.from({ length: accountsNeeded }, () => newId("sa"));
          await insertAccounts(client, ids, this.accountsMade, now);
          this.accountsMade += accountsNeeded;
          this.accountIds.push(...ids);
        }
        const ids: string[] = [];
        const accounts: string[] = [];
        const hashes: Buffer[] = [];
        const prefixes: string[] = [];
        const lasts: string[] = [];
        const labels: string[] = [];
        for (let i = 0; i < n; i++) {
          const secret = generateToken();
          const index = this.count + i;
          ids.push(newId("tok"));
          accounts.push(this.accountIds[Math.floor(index / TOKENS_PER_ACCOUNT)]!);
          hashes.push(hashToken(secret));
          prefixes.push(displayPrefix(secret));
          lasts.push(lastFour(secret));
          labels.push(`bench ${index}`);
          this.tokens.secrets.push(secret);
        }
        await client.query(
          `insert into tokens (id, organization_id, service_account_id, label, secret_hash, prefix, last_four, scopes,
                               project_ids, environments, status, expire_time, create_time, created_by_kind, created_by_id)
           select id, $2, sa, label, hash, prefix, last4, $8::text[], '{}', '{}', 'active', null, $9, 'user', 'user_bench'
             from unnest($1::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], $7::text[]) as u(id, sa, label, hash, prefix, last4)`,
          [ids, BENCH_ORG, accounts, labels, hashes, prefixes, lasts, SEED_SCOPES, now],
        );
        this.tokens.ids.push(...ids);
        this.tokens.serviceAccountIds.push(...accounts);
        inserted += n;
      }
      await client.query("analyze tokens");
      await client.query("analyze service_accounts");
    } finally {
      await client.end();
    }
    return { inserted, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
  }

  /** Service accounts without tokens, for CreateToken. */
  async emptyAccounts(n: number): Promise<string[]> {
    const client = new Client({ connectionString: this.url });
    await client.connect();
    try {
      const ids = Array.from({ length: n }, () => newId("sa"));
      await insertAccounts(client, ids, 1_000_000_000 + this.accountsMade, new Date(), "empty");
      this.accountsMade += n;
      return ids;
    } finally {
      await client.end();
    }
  }

  /** Writes `secret,tokenId` lines (the first `limit`) for the load generators; mode 0600. */
  writeTokensFile(path: string, limit = this.count): Promise<void> {
    return new Promise((resolve, reject) => {
      const out = createWriteStream(path, { mode: 0o600 });
      out.on("error", reject);
      const CHUNK = 10_000;
      for (let i = 0; i < limit; i += CHUNK) {
        const lines: string[] = [];
        for (let j = i; j < Math.min(limit, i + CHUNK); j++) lines.push(`${this.tokens.secrets[j]},${this.tokens.ids[j]}\n`);
        out.write(lines.join(""));
      }
      out.end(resolve);
    });
  }
}

async function insertAccounts(client: Client, ids: string[], offset: number, now: Date, kind = "seed"): Promise<void> {
  for (let i = 0; i < ids.length; i += BATCH) {
    const slice = ids.slice(i, i + BATCH);
    const names = slice.map((_, j) => `bench ${kind} ${offset + i + j}`);
    await client.query(
      `insert into service_accounts (id, organization_id, name, description, status, created_by_kind, created_by_id, create_time, update_time)
       select id, $2, name, '', 'active', 'user', 'user_bench', $4, $4 from unnest($1::text[], $3::text[]) as u(id, name)`,
      [slice, BENCH_ORG, names, now],
    );
  }
}

export async function countRows(url: string, sql: string, params: unknown[] = []): Promise<number> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const r = await client.query<{ n: string }>(sql, params);
    return Number(r.rows[0]?.n ?? 0);
  } finally {
    await client.end();
  }
}

import { MikroORM, type Options } from "@mikro-orm/postgresql";
import { Migrator } from "@mikro-orm/migrations";
import { Client } from "pg";
import { AuditEventSchema } from "../audit/entity";
import { ServiceAccountSchema } from "../service-accounts/entity";
import { TokenPolicySchema } from "../token-policies/entity";
import { TokenSchema } from "../tokens/entity";
import { migrationsList } from "./migrations";

export interface DatabaseOptions {
  /** Where MikroORM's own messages go (migrations applied, debug queries). */
  logger?: (message: string) => void;
  url: string;
  poolMax: number;
  /** Milliseconds to wait for a connection or a statement before giving up (UNAVAILABLE). */
  timeoutMs: number;
  debug?: boolean;
}

export function ormOptions(db: DatabaseOptions): Options {
  return {
    clientUrl: db.url,
    entities: [ServiceAccountSchema, TokenSchema, AuditEventSchema, TokenPolicySchema],
    discovery: { warnWhenNoEntities: true },
    extensions: [Migrator],
    migrations: {
      migrationsList,
      tableName: "mikro_orm_migrations",
      transactional: true,
      allOrNothing: true,
      snapshot: false,
      silent: true,
    },
    pool: {
      min: 0,
      max: db.poolMax,
      acquireTimeoutMillis: db.timeoutMs,
      createTimeoutMillis: db.timeoutMs,
      idleTimeoutMillis: 30_000,
      propagateCreateError: true,
    },
    driverOptions: {
      // knex's own warnings (e.g. "Connection Error" when PostgreSQL goes away) go to our logger.
      log: {
        warn: (m: unknown) => db.logger?.(`knex warn: ${String(m)}`),
        error: (m: unknown) => db.logger?.(`knex error: ${String(m)}`),
        deprecate: () => undefined,
        debug: () => undefined,
      },
      connection: {
        connectionTimeoutMillis: db.timeoutMs,
        statement_timeout: Math.max(db.timeoutMs * 2, 2_000),
        application_name: "pokerworks-identity",
      },
    },
    // Entities are never serialized to clients: one mapper per feature builds the proto messages.
    forceUtcTimezone: true,
    ensureDatabase: false,
    allowGlobalContext: false,
    debug: db.debug ?? false,
    logger: db.logger ?? (() => undefined),
  };
}

export async function openOrm(db: DatabaseOptions): Promise<MikroORM> {
  return MikroORM.init(ormOptions(db));
}

const MIGRATION_LOCK = 727_110_001;

/**
 * Applies pending migrations. Replicas starting together serialise on a PostgreSQL advisory
 * lock held by a dedicated session, so each migration runs exactly once.
 */
export async function migrate(orm: MikroORM, url: string | undefined): Promise<string[]> {
  if (url === undefined) {
    // The embedded database serves one connection to one process: nothing to serialise.
    return (await orm.getMigrator().up()).map((m) => m.name);
  }
  const lock = new Client({ connectionString: url });
  await lock.connect();
  try {
    await lock.query("select pg_advisory_lock($1)", [MIGRATION_LOCK]);
    const applied = await orm.getMigrator().up();
    return applied.map((m) => m.name);
  } finally {
    await lock.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => undefined);
    await lock.end();
  }
}

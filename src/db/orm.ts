import { MikroORM, type Options } from "@mikro-orm/postgresql";
import { Migrator } from "@mikro-orm/migrations";
import { AuditEventSchema } from "../audit/entity";
import { ServiceAccountSchema } from "../service-accounts/entity";
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
    entities: [ServiceAccountSchema, TokenSchema, AuditEventSchema],
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

export async function migrate(orm: MikroORM): Promise<string[]> {
  const applied = await orm.getMigrator().up();
  return applied.map((m) => m.name);
}

/** `npm run migrate`: applies the checked-in migrations to DATABASE_URL (or the embedded database) and exits. */
import { ConfigError, loadConfig } from "./config";
import { startEmbeddedDatabase } from "./db/embedded";
import { migrate, openOrm } from "./db/orm";

async function run(): Promise<void> {
  const config = loadConfig();
  const embedded = config.databaseUrl ? undefined : await startEmbeddedDatabase(config.embeddedDataDir);
  const orm = await openOrm({ url: config.databaseUrl ?? embedded!.url, poolMax: 1, timeoutMs: config.databaseTimeoutMs });
  try {
    const applied = await migrate(orm, config.databaseUrl);
    process.stdout.write(applied.length ? `applied: ${applied.join(", ")}\n` : "database is up to date\n");
  } finally {
    await orm.close(true);
    await embedded?.stop();
  }
}

run().catch((err: unknown) => {
  process.stderr.write(`${err instanceof ConfigError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

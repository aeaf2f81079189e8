/**
 * Records `last_used_time` off the hot path: Authorize only notes the time in memory; a
 * timer writes the batch in one statement. A token is written at most once a minute.
 * Pending times are flushed on shutdown.
 */
import type { MikroORM } from "@mikro-orm/postgresql";
import type { Logger } from "pino";

export const MIN_WRITE_INTERVAL_MS = 60_000;
const MAX_REMEMBERED = 200_000;

export class LastUsedRecorder {
  private pending = new Map<string, { at: number; caller: string; scope: string }>();
  /** When each token's last_used_time was last queued, to write at most once a minute. */
  private readonly lastQueued = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly orm: MikroORM,
    private readonly log: Logger,
    private readonly flushIntervalMs: number,
  ) {}

  /** Notes a use: when, by which calling service, for which scope. Written at most once a minute per token. */
  touch(tokenId: string, nowMs: number, caller = "", scope = ""): void {
    const last = this.lastQueued.get(tokenId);
    if (last !== undefined && nowMs - last < MIN_WRITE_INTERVAL_MS) return;
    if (last !== undefined) this.lastQueued.delete(tokenId);
    else if (this.lastQueued.size >= MAX_REMEMBERED) {
      const oldest = this.lastQueued.keys().next().value;
      if (oldest !== undefined) this.lastQueued.delete(oldest);
    }
    this.lastQueued.set(tokenId, nowMs);
    this.pending.set(tokenId, { at: nowMs, caller, scope });
  }

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.flushIntervalMs);
    this.timer.unref();
  }

  /** Writes what is pending; one statement for the whole batch. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.pending.size === 0) return;
      const batch = this.pending;
      this.pending = new Map();
      const rows = [...batch].map(([id, use]) => ({ id, at: new Date(use.at).toISOString(), caller: use.caller, scope: use.scope }));
      try {
        await this.orm.em.getConnection().execute(
          `update tokens t set last_used_time = v.at, last_used_caller = v.caller, last_used_scope = v.scope
             from jsonb_to_recordset(?::jsonb) as v(id text, at timestamptz, caller text, scope text)
            where t.id = v.id and (t.last_used_time is null or t.last_used_time < v.at)`,
          [JSON.stringify(rows)],
        );
      } catch (err) {
        // Keep the newest time of each token for the next attempt.
        for (const [id, use] of batch) if ((this.pending.get(id)?.at ?? 0) < use.at) this.pending.set(id, use);
        this.log.warn({ err: (err as Error).message, tokens: rows.length }, "could not record last_used_time; will retry");
      }
    });
    return this.flushing;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }
}

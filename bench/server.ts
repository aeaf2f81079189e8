/**
 * The service under test, in its own process so its CPU and RSS can be measured: reads the
 * configuration from the environment like main.ts, starts the container, tells the
 * orchestrator its address over IPC and answers stats requests. Stops cleanly on SIGTERM
 * (so `node --cpu-prof` writes its profile).
 */
import { loadConfig } from "../src/config";
import { startContainer } from "../src/container";
import type { FromServer, ServerStats } from "./common";

async function main(): Promise<void> {
  const container = await startContainer(loadConfig(process.env));
  const send = (m: FromServer) => process.send?.(m);
  process.on("message", (m: { type: string }) => {
    if (m.type !== "stats") return;
    const { cache, negative } = container.authorizer;
    const mem = process.memoryUsage();
    const stats: ServerStats = {
      cacheHits: cache.hits,
      cacheMisses: cache.misses,
      cacheSize: cache.size,
      negativeSize: negative.size,
      heapUsedBytes: mem.heapUsed,
      rssBytes: mem.rss,
    };
    send({ type: "stats", stats });
  });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void container.stop().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.on("disconnect", stop);
  send({ type: "ready", address: container.address });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench server failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

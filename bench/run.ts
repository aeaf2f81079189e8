/**
 * `npm run bench`: the Authorize benchmark of issue 5, side by side with its limit.
 *
 * For each scenario the orchestrator starts a fresh server process (the service through
 * startContainer, or the no-op grpc-js server), forks load-generator processes, lets them
 * warm up, then measures throughput and latency (from the load generators' samples) and the
 * server's CPU and RSS (from /proc) over the same window. Databases are created fresh on the
 * local PostgreSQL and dropped afterwards; every server gets its own Redis key prefix, and
 * the run deletes its own keys (never FLUSH). See BENCHMARKS.md for what each scenario means.
 *
 *   node dist/bench/run.js [--tokens 10000] [--concurrency 64] [--duration 10] [--warmup 3]
 *     [--loadgens 2] [--scenarios baseline,warm,cold,...] [--scale-steps 1000,100000,1000000]
 *     [--profile warm] [--out bench/results/NAME.json] [--no-markdown] [--smoke]
 */
import { type ChildProcess, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, setPriority, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { credentials, type ServiceError } from "@grpc/grpc-js";
import Redis from "ioredis";
import { Client as PgClient } from "pg";
import { RevokeTokenRequest, TokenServiceClient } from "../src/generated/pokerworks/identity/v1/token_service";
import {
  cpuDelta,
  cpuSeconds,
  cpuSecondsByComm,
  type FromLoadgen,
  type FromServer,
  type LoadgenConfig,
  type LoadgenResult,
  machineJiffies,
  nowUs,
  percentile,
  type RevocationEvent,
  rssBytes,
  type ServerStats,
  type ToLoadgen,
  zipfSampler,
} from "./common";
import { BENCH_ORG, type BenchDatabase, countRows, createBenchDatabase, Seeder } from "./seed";

const ALL_SCENARIOS = ["baseline", "warm", "cold", "half", "cold-half", "mixed", "create", "scale"] as const;
type ScenarioName = (typeof ALL_SCENARIOS)[number];

const { values: args } = parseArgs({
  options: {
    tokens: { type: "string" },
    concurrency: { type: "string" },
    duration: { type: "string" },
    warmup: { type: "string" },
    loadgens: { type: "string" },
    scenarios: { type: "string" },
    "scale-steps": { type: "string" },
    "hot-set": { type: "string" },
    profile: { type: "string" },
    out: { type: "string" },
    "no-markdown": { type: "boolean" },
    smoke: { type: "boolean" },
    "pg-admin-url": { type: "string" },
    "redis-url": { type: "string" },
    "server-env": { type: "string", multiple: true },
    "quiet-wait": { type: "string" },
    nice: { type: "string" },
    help: { type: "boolean" },
  },
});

if (args.help) {
  process.stdout.write(
    "npm run bench -- [--tokens 10000] [--concurrency 64] [--duration 10] [--warmup 3] [--loadgens 2]\n" +
      `  [--scenarios ${ALL_SCENARIOS.join(",")}] [--scale-steps 1000,100000,1000000] [--hot-set 1000]\n` +
      "  [--profile SCENARIO] [--server-env NAME=VALUE ...] [--quiet-wait 90] [--nice=-10] [--out FILE.json] [--no-markdown] [--smoke]\n",
  );
  process.exit(0);
}

const smoke = args.smoke ?? false;
function num(name: string, raw: string | undefined, def: number): number {
  if (raw === undefined) return def;
  const n = Number(raw.replace(/_/g, ""));
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got '${raw}'`);
  return n;
}
const opts = {
  tokens: Math.round(num("tokens", args.tokens, smoke ? 500 : 10_000)),
  concurrency: Math.round(num("concurrency", args.concurrency, smoke ? 8 : 64)),
  durationMs: num("duration", args.duration, smoke ? 1.5 : 10) * 1000,
  warmupMs: num("warmup", args.warmup, smoke ? 0.5 : 3) * 1000,
  loadgens: Math.round(num("loadgens", args.loadgens, 2)),
  hotSet: Math.round(num("hot-set", args["hot-set"], 1000)),
  scaleSteps: (args["scale-steps"] ?? (smoke ? "200,1000" : "1000,100000,1000000")).split(",").map((s) => Math.round(num("scale-steps", s, 1))),
  scenarios: (args.scenarios ?? ALL_SCENARIOS.join(",")).split(",").map((s) => s.trim()) as ScenarioName[],
  pgAdminUrl: args["pg-admin-url"] ?? process.env.BENCH_PG_ADMIN_URL ?? process.env.TEST_PG_ADMIN_URL ?? "postgresql://postgres@127.0.0.1:5432/test",
  redisUrl: args["redis-url"] ?? process.env.BENCH_REDIS_URL ?? process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379",
  profile: args.profile,
  /** Scheduling priority for the server, the load generators and this run's PostgreSQL backends (root only for < 0). */
  nice: args.nice !== undefined ? Number(args.nice) : 0,
  serverEnv: Object.fromEntries((args["server-env"] ?? []).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)])),
};
for (const s of opts.scenarios) if (!ALL_SCENARIOS.includes(s)) throw new Error(`unknown scenario '${s}'; known: ${ALL_SCENARIOS.join(", ")}`);
if (opts.concurrency < opts.loadgens) opts.loadgens = opts.concurrency;

const REPO = resolve(__dirname, "../..");
const runId = randomBytes(4).toString("hex");
const redisPrefixBase = `bench${runId}`;
const workDir = mkdtempSync(join(tmpdir(), "pw-bench-"));
const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---------------------------------------------------------------- processes

interface ServerHandle {
  proc: ChildProcess;
  address: string;
  kind: "service" | "noop";
  stats(): Promise<ServerStats | undefined>;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
let serverCount = 0;

async function startServer(kind: "service" | "noop", env: Record<string, string>, label: string): Promise<ServerHandle> {
  const script = join(__dirname, kind === "service" ? "server.js" : "noop-server.js");
  const execArgv = opts.profile === label ? ["--cpu-prof", `--cpu-prof-dir=${profileDir()}`] : [];
  const logFd = openSync(join(workDir, `server-${++serverCount}-${label}.log`), "a");
  const proc = fork(script, [], {
    execArgv,
    env: {
      PATH: process.env.PATH,
      NODE_ENV: "production",
      LISTEN_ADDRESS: "127.0.0.1:0",
      REDIS_KEY_PREFIX: `${redisPrefixBase}-${serverCount}`,
      LOG_LEVEL: "info",
      SHUTDOWN_GRACE_MS: "3000",
      ...env,
      ...opts.serverEnv,
    },
    stdio: ["ignore", logFd, logFd, "ipc"],
  });
  closeSync(logFd);
  renice(proc.pid);
  children.add(proc);
  proc.on("exit", () => children.delete(proc));
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} server did not start in 30 s (log in ${workDir})`)), 30_000);
    proc.on("message", (m: FromServer) => {
      if (m.type === "ready") {
        clearTimeout(timer);
        resolve(m.address);
      }
    });
    proc.on("exit", (code) => reject(new Error(`${kind} server exited with ${code} before it was ready (log in ${workDir})`)));
  });
  return {
    proc,
    address,
    kind,
    stats: () =>
      kind === "noop"
        ? Promise.resolve(undefined)
        : new Promise((resolve) => {
            const timer = setTimeout(() => resolve(undefined), 2000);
            const onMessage = (m: FromServer) => {
              if (m.type !== "stats") return;
              clearTimeout(timer);
              proc.off("message", onMessage);
              resolve(m.stats);
            };
            proc.on("message", onMessage);
            proc.send({ type: "stats" });
          }),
    stop: () => stopChild(proc, 20_000),
  };
}

function stopChild(proc: ChildProcess, graceMs: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
    proc.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill("SIGTERM");
  });
}

function profileDir(): string {
  const dir = join(REPO, "bench", "results", "profiles");
  mkdirSync(dir, { recursive: true });
  return dir;
}

// ---------------------------------------------------------------- one measured run

interface LoadSpec {
  mode: "authorize" | "create";
  /** Closed loop when rate is 0. */
  rate: number;
  concurrency: number;
  tokensFile?: string;
  workingSet?: number;
  distribution?: "uniform" | "zipf";
  unknownFraction?: number;
  scopeDeniedFraction?: number;
  serviceAccountsFile?: string;
  /** Revoke this fraction of completed requests' worth of tokens through RevokeToken during the run. */
  revokeFraction?: number;
  revokeCandidates?: { ids: string[]; zipfExponent: number };
  prewarm?: boolean;
}

export interface ScenarioResult {
  name: string;
  server: "service" | "noop";
  description: string;
  tokensInDatabase: number | null;
  mode: "closed-loop" | "open-loop";
  concurrency: number | null;
  targetRate: number | null;
  serverEnv: Record<string, string>;
  throughput: number;
  latencyMs: { p50: number; p95: number; p99: number; p999: number; max: number; mean: number };
  /** Open loop only: from the actual send, i.e. without the load generator's own scheduling delay. */
  latencyFromSendMs?: { p50: number; p95: number; p99: number; p999: number };
  serverCpuPercent: number;
  /** Server CPU time per completed request: robust to other load on the machine. */
  serverCpuUsPerRequest: number;
  serverRssMaxMB: number;
  serverRssEndMB: number;
  postgresCpuPercent: number;
  redisCpuPercent: number;
  loadgenCpuPercent: number;
  /** CPU used on the machine by everything else (other sessions' tests, the orchestrator), in % of one core. */
  otherCpuPercent: number;
  requests: number;
  errors: number;
  errorCodes: Record<string, number>;
  dropped: number;
  checked: number;
  wrongDecisions: number;
  allowedAfterRevoke: number;
  ambiguousInRevokeWindow: number;
  wrongExamples: string[];
  revocations: number;
  reasons: Record<string, number>;
  cache?: { hitRatio: number; size: number; negativeSize: number };
  /** V8 heap in use at the end of the window (the rest of RSS is V8's reserve, code and native buffers). */
  serverHeapUsedMB?: number;
  ratioToBaseline?: number;
}

/**
 * This machine is shared (other sessions build and test on it): before a measurement, wait
 * until the rest of the machine has been quiet for a second, at most QUIET_WAIT_MS.
 */
const QUIET_WAIT_MS = args["quiet-wait"] !== undefined ? Number(args["quiet-wait"]) * 1000 : 90_000;
async function waitForQuiet(label: string): Promise<void> {
  if (smoke) return;
  const deadline = Date.now() + (smoke ? 0 : QUIET_WAIT_MS);
  let warned = false;
  for (;;) {
    const a = machineJiffies();
    await new Promise((r) => setTimeout(r, 1000));
    const b = machineJiffies();
    const busy = (b.busy - a.busy) / Math.max(1, b.total - a.total);
    if (busy < 0.1 || Date.now() >= deadline) {
      if (busy >= 0.1) log(`${label}: machine still ${(busy * 100).toFixed(0)}% busy with other work; measuring anyway (see "other CPU")`);
      return;
    }
    if (!warned) log(`${label}: machine ${(busy * 100).toFixed(0)}% busy with other work; waiting up to ${QUIET_WAIT_MS / 1000} s for it to settle`);
    warned = true;
  }
}

async function measure(name: string, description: string, server: ServerHandle, spec: LoadSpec, tokensInDatabase: number | null, serverEnv: Record<string, string>): Promise<ScenarioResult> {
  await waitForQuiet(name);
  const workers = Math.min(opts.loadgens, Math.max(1, spec.concurrency));
  const procs: ChildProcess[] = [];
  const results: LoadgenResult[] = [];
  const completedBy = new Array<number>(workers).fill(0);
  const samplesFiles: string[] = [];
  const armed: Promise<void>[] = [];
  const done: Promise<void>[] = [];
  for (let w = 0; w < workers; w++) {
    const proc = fork(join(__dirname, "loadgen.js"), [], { stdio: ["ignore", "inherit", "inherit", "ipc"], env: { PATH: process.env.PATH, NODE_ENV: "production" } });
    renice(proc.pid);
    children.add(proc);
    proc.on("exit", () => children.delete(proc));
    procs.push(proc);
    const samplesFile = join(workDir, `samples-${name}-${w}.bin`);
    samplesFiles.push(samplesFile);
    const config: LoadgenConfig = {
      worker: w,
      workers,
      address: server.address,
      mode: spec.mode,
      concurrency: Math.floor(spec.concurrency / workers) + (w < spec.concurrency % workers ? 1 : 0),
      rate: spec.rate / workers,
      warmupMs: opts.warmupMs,
      durationMs: opts.durationMs,
      tokensFile: spec.tokensFile,
      workingSet: spec.workingSet,
      distribution: spec.distribution,
      zipfExponent: spec.revokeCandidates?.zipfExponent ?? 1,
      unknownFraction: spec.unknownFraction,
      scopeDeniedFraction: spec.scopeDeniedFraction,
      serviceAccountsFile: spec.serviceAccountsFile,
      organizationId: BENCH_ORG,
      samplesFile,
      verify: server.kind === "service",
      prewarm: spec.prewarm,
      seed: (Number.parseInt(runId, 16) + w * 7919 + serverCount * 104729) >>> 0,
    };
    armed.push(
      new Promise((resolve, reject) => {
        proc.on("message", (m: FromLoadgen) => {
          if (m.type === "ready") proc.send({ type: "start", config } satisfies ToLoadgen);
          else if (m.type === "armed") resolve();
          else if (m.type === "progress") completedBy[m.worker] = m.completed;
        });
        proc.on("exit", (code) => reject(new Error(`load generator ${w} exited with ${code}`)));
      }),
    );
    done.push(
      new Promise((resolve, reject) => {
        proc.on("message", (m: FromLoadgen) => {
          if (m.type === "done") {
            results.push(m.result);
            resolve();
          }
        });
        proc.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`load generator ${w} exited with ${code}`))));
      }),
    );
  }
  await Promise.all(armed);

  // Revocations during the run (mixed workload): paced to revokeFraction of completed requests.
  const revocationEvents: RevocationEvent[] = [];
  let revoker: Promise<void> = Promise.resolve();
  let revoking = true;
  if (spec.revokeFraction && spec.revokeCandidates) {
    const candidates = spec.revokeCandidates;
    const tokens = new TokenServiceClient(server.address, credentials.createInsecure());
    const pick = zipfSampler(candidates.ids.length, candidates.zipfExponent, Math.random);
    const revoked = new Set<number>();
    const revokeOne = (idx: number): Promise<void> =>
      new Promise((resolve) => {
        const startUs = nowUs();
        tokens.revokeToken(RevokeTokenRequest.fromPartial({ organizationId: BENCH_ORG, tokenId: candidates.ids[idx]!, actor: { kind: { $case: "userId", value: "user_bench" } } }), (err: ServiceError | null) => {
          const okUs = nowUs();
          if (err) log(`RevokeToken failed: ${err.code} ${err.details}`);
          else {
            const event = { idx, startUs, okUs };
            revocationEvents.push(event);
            for (const p of procs) if (p.connected) p.send({ type: "revoked", event } satisfies ToLoadgen);
          }
          resolve();
        });
      });
    revoker = (async () => {
      while (revoking) {
        const completed = completedBy.reduce((a, b) => a + b, 0);
        if (revocationEvents.length < Math.floor(completed * spec.revokeFraction!) && revoked.size < candidates.ids.length / 2) {
          let idx = pick();
          while (revoked.has(idx)) idx = pick();
          revoked.add(idx);
          await revokeOne(idx);
        } else await new Promise((r) => setTimeout(r, 20));
      }
      tokens.close();
    })();
  }

  const t0 = nowUs();
  for (const p of procs) p.send({ type: "go", t0Us: t0 } satisfies ToLoadgen);

  // Server CPU/RSS, PostgreSQL and Redis CPU, over the measured window.
  await sleepUntil(t0 + opts.warmupMs * 1000);
  const pid = server.proc.pid!;
  // PostgreSQL CPU: the backends serving this run's database (others' tests use the same server).
  const backends = databaseOf(server) ? await backendsOf(databaseOf(server)!) : [];
  for (const b of backends) renice(b);
  const cpu0 = cpuSeconds(pid);
  const pg0 = new Map(backends.map((b) => [b, cpuSeconds(b)]));
  const redis0 = cpuSecondsByComm("redis-server");
  const lg0 = procs.map((p) => cpuSeconds(p.pid!));
  const m0 = machineJiffies();
  const wall0 = nowUs();
  let rssMax = rssBytes(pid);
  const rssTimer = setInterval(() => (rssMax = Math.max(rssMax, rssBytes(pid))), 200);
  await sleepUntil(t0 + (opts.warmupMs + opts.durationMs) * 1000);
  clearInterval(rssTimer);
  const wallS = (nowUs() - wall0) / 1e6;
  const cpu1 = cpuSeconds(pid);
  const pg1 = new Map(backends.map((b) => [b, cpuSeconds(b)]));
  const redis1 = cpuSecondsByComm("redis-server");
  const lg1 = procs.map((p) => cpuSeconds(p.pid!));
  const m1 = machineJiffies();
  const rssEnd = rssBytes(pid);
  rssMax = Math.max(rssMax, rssEnd);
  const stats = await server.stats();

  revoking = false;
  await revoker;
  for (const p of procs) if (p.connected) p.send({ type: "finish" } satisfies ToLoadgen);
  await Promise.all(done);

  // Latencies: every sample from every load generator, in µs.
  const merged = (suffix: string) => {
    const parts = samplesFiles.map((f) => {
      const buf = readFileSync(f + suffix);
      return new Float64Array(buf.buffer, buf.byteOffset, buf.length / 8);
    });
    const out = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out.sort();
  };
  const all = merged("");
  const sendSorted = spec.rate > 0 ? merged(".send") : undefined;
  const ms = (us: number) => Math.round(us) / 1000;
  const sum = (f: (r: LoadgenResult) => number) => results.reduce((a, r) => a + f(r), 0);
  const merge = (f: (r: LoadgenResult) => Record<string, number>) => {
    const out: Record<string, number> = {};
    for (const r of results) for (const [k, v] of Object.entries(f(r))) out[k] = (out[k] ?? 0) + v;
    return out;
  };
  const completed = sum((r) => r.completed);
  const serverCpu = cpu1 - cpu0;
  const pgCpu = cpuDelta(pg0, pg1);
  const redisCpu = cpuDelta(redis0, redis1);
  const lgCpu = lg1.reduce((a, v, i) => a + v - lg0[i]!, 0);
  const machineBusyS = ((m1.busy - m0.busy) / 100) ; // jiffies are USER_HZ across all cores
  const other = Math.max(0, machineBusyS - serverCpu - pgCpu - redisCpu - lgCpu);
  const pct = (s: number) => Math.round((s / wallS) * 1000) / 10;
  const result: ScenarioResult = {
    name,
    server: server.kind,
    description,
    tokensInDatabase,
    mode: spec.rate > 0 ? "open-loop" : "closed-loop",
    concurrency: spec.rate > 0 ? null : spec.concurrency,
    targetRate: spec.rate > 0 ? Math.round(spec.rate) : null,
    serverEnv,
    throughput: Math.round(completed / (opts.durationMs / 1000)),
    latencyMs: {
      p50: ms(percentile(all, 50)),
      p95: ms(percentile(all, 95)),
      p99: ms(percentile(all, 99)),
      p999: ms(percentile(all, 99.9)),
      max: ms(all[all.length - 1] ?? NaN),
      mean: ms(all.reduce((a, b) => a + b, 0) / Math.max(1, all.length)),
    },
    latencyFromSendMs: sendSorted
      ? { p50: ms(percentile(sendSorted, 50)), p95: ms(percentile(sendSorted, 95)), p99: ms(percentile(sendSorted, 99)), p999: ms(percentile(sendSorted, 99.9)) }
      : undefined,
    serverCpuPercent: pct(serverCpu),
    serverCpuUsPerRequest: completed ? Math.round((serverCpu * 1e6) / completed) : 0,
    serverRssMaxMB: Math.round(rssMax / 1048576),
    serverRssEndMB: Math.round(rssEnd / 1048576),
    postgresCpuPercent: pct(pgCpu),
    redisCpuPercent: pct(redisCpu),
    loadgenCpuPercent: pct(lgCpu),
    otherCpuPercent: pct(other),
    requests: completed,
    errors: sum((r) => r.errors),
    errorCodes: merge((r) => r.errorCodes),
    dropped: sum((r) => r.dropped),
    checked: sum((r) => r.checked),
    wrongDecisions: sum((r) => r.wrong),
    allowedAfterRevoke: sum((r) => r.allowedAfterRevoke),
    ambiguousInRevokeWindow: sum((r) => r.ambiguousInRevokeWindow),
    wrongExamples: results.flatMap((r) => r.wrongExamples).slice(0, 10),
    revocations: revocationEvents.length,
    reasons: merge((r) => r.reasons),
  };
  if (stats) {
    const lookups = stats.cacheHits + stats.cacheMisses;
    result.cache = { hitRatio: lookups ? Math.round((stats.cacheHits / lookups) * 10000) / 10000 : 0, size: stats.cacheSize, negativeSize: stats.negativeSize };
    result.serverHeapUsedMB = Math.round(stats.heapUsedBytes / 1048576);
  }
  for (const f of samplesFiles) {
    rmSync(f, { force: true });
    rmSync(`${f}.send`, { force: true });
  }
  log(
    `${name}: ${result.throughput}/s p50 ${result.latencyMs.p50} p99 ${result.latencyMs.p99} p99.9 ${result.latencyMs.p999} ms; server CPU ${result.serverCpuPercent}% (${result.serverCpuUsPerRequest} µs/req) RSS ${result.serverRssMaxMB} MB${result.serverHeapUsedMB !== undefined ? ` (heap ${result.serverHeapUsedMB})` : ""}; ` +
      `pg ${result.postgresCpuPercent}% redis ${result.redisCpuPercent}% loadgen ${result.loadgenCpuPercent}% other ${result.otherCpuPercent}%; errors ${result.errors}, wrong ${result.wrongDecisions}` +
      (result.revocations ? `, revocations ${result.revocations}` : "") +
      (result.cache ? `, cache hit ${result.cache.hitRatio}` : "") +
      (result.latencyFromSendMs ? `; from send: p50 ${result.latencyFromSendMs.p50} p99 ${result.latencyFromSendMs.p99} ms` : ""),
  );
  return result;
}

/**
 * With sched_autogroup (the default on desktop-style kernels), CFS shares the CPU between
 * sessions first, so a process's nice value only counts inside its session: --nice also
 * sets this session's autogroup nice, which every process of the run inherits.
 */
let autogroupBefore: string | undefined;
function reniceSession(): void {
  if (opts.nice === 0) return;
  try {
    autogroupBefore = /nice (-?\d+)/.exec(readFileSync("/proc/self/autogroup", "utf8"))?.[1];
    writeFileSync("/proc/self/autogroup", String(opts.nice));
    log(`session autogroup nice set to ${opts.nice}`);
  } catch {
    // no autogroup scheduling here: per-process nice is what counts
  }
}

function renice(pid: number | undefined): void {
  if (opts.nice === 0 || pid === undefined) return;
  try {
    setPriority(pid, opts.nice);
  } catch (err) {
    log(`could not set priority ${opts.nice} on ${pid}: ${(err as Error).message}`);
  }
}

/** The PostgreSQL backends serving this run's database (they exist once the warm-up has used them). */
async function backendsOf(database: string): Promise<number[]> {
  const c = new PgClient({ connectionString: opts.pgAdminUrl });
  await c.connect();
  try {
    const r = await c.query<{ pid: number }>("select pid from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()", [database]);
    return r.rows.map((row) => row.pid);
  } finally {
    await c.end();
  }
}

const serverDatabase = new WeakMap<ServerHandle, string>();
function databaseOf(server: ServerHandle): string | undefined {
  return serverDatabase.get(server);
}

function sleepUntil(us: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, (us - nowUs()) / 1000)));
}

// ---------------------------------------------------------------- scenarios

const results: ScenarioResult[] = [];
const databases: BenchDatabase[] = [];

async function withServer<T>(kind: "service" | "noop", env: Record<string, string>, label: string, fn: (s: ServerHandle) => Promise<T>): Promise<T> {
  const server = await startServer(kind, env, label);
  if (env.DATABASE_URL) serverDatabase.set(server, new URL(env.DATABASE_URL).pathname.slice(1));
  try {
    return await fn(server);
  } finally {
    await server.stop();
  }
}

function serviceEnv(db: BenchDatabase, extra: Record<string, string> = {}): Record<string, string> {
  return { DATABASE_URL: db.url, REDIS_URL: opts.redisUrl, ...extra };
}

function find(name: string): ScenarioResult | undefined {
  return results.find((r) => r.name === name);
}

async function main(): Promise<void> {
  const started = new Date();
  const want = (s: ScenarioName) => opts.scenarios.includes(s);
  log(`run ${runId}: ${cpus().length} cores, node ${process.version}, work dir ${workDir}`);
  reniceSession();

  const needsMainDb = opts.scenarios.some((s) => s !== "baseline" && s !== "scale");
  const baselineSpec = (): LoadSpec => ({ mode: "authorize", rate: 0, concurrency: opts.concurrency, tokensFile: mainTokensFile, workingSet: Math.min(opts.hotSet, opts.tokens), distribution: "uniform" });
  let mainTokensFile = join(workDir, "tokens-main.csv");

  // The main database: --tokens tokens.
  let mainDb: BenchDatabase | undefined;
  let seeder: Seeder | undefined;
  if (needsMainDb || want("baseline")) {
    mainDb = await createBenchDatabase(opts.pgAdminUrl);
    databases.push(mainDb);
    seeder = new Seeder(mainDb.url);
    const s = await seeder.grow(opts.tokens);
    log(`seeded ${s.inserted} tokens into ${mainDb.name} in ${s.seconds.toFixed(1)} s`);
    await seeder.writeTokensFile(mainTokensFile);
  }

  if (want("baseline")) {
    results.push(
      await withServer("noop", {}, "baseline", (s) =>
        measure("baseline", "No-op grpc-js server (same service definition and answer size), closed loop", s, baselineSpec(), null, {}),
      ),
    );
  }

  const hot = Math.min(opts.hotSet, opts.tokens);
  const warmSpec = (): LoadSpec => ({ mode: "authorize", rate: 0, concurrency: opts.concurrency, tokensFile: mainTokensFile, workingSet: hot, distribution: "uniform", prewarm: true });
  if (want("warm") || (want("half") && !find("warm"))) {
    results.push(
      await withServer("service", serviceEnv(mainDb!), "warm", (s) =>
        measure("warm", `Cache hits: ${hot} hot tokens, uniform, closed loop`, s, warmSpec(), opts.tokens, {}),
      ),
    );
  }

  const coldEnv = { TOKEN_CACHE_MAX_ENTRIES: "0" };
  const coldSpec = (): LoadSpec => ({ mode: "authorize", rate: 0, concurrency: opts.concurrency, tokensFile: mainTokensFile, workingSet: opts.tokens, distribution: "uniform" });
  if (want("cold") || (want("cold-half") && !find("cold"))) {
    results.push(
      await withServer("service", serviceEnv(mainDb!, coldEnv), "cold", (s) =>
        measure("cold", `Cold lookups: token cache disabled, all ${opts.tokens} tokens uniform, closed loop`, s, coldSpec(), opts.tokens, coldEnv),
      ),
    );
  }

  if (want("half")) {
    const rate = Math.max(1, Math.round(find("warm")!.throughput / 2));
    if (want("baseline"))
      results.push(
        await withServer("noop", {}, "baseline-half", (s) =>
          measure("baseline-half", "No-op server at the same rate as `half` (the latency floor of this stack at that load)", s, { ...baselineSpec(), rate }, null, {}),
        ),
      );
    results.push(
      await withServer("service", serviceEnv(mainDb!), "half", (s) =>
        measure("half", `Warm, open loop at 50% of the warm maximum (${rate}/s)`, s, { ...warmSpec(), rate }, opts.tokens, {}),
      ),
    );
  }

  if (want("cold-half")) {
    const rate = Math.max(1, Math.round(find("cold")!.throughput / 2));
    results.push(
      await withServer("service", serviceEnv(mainDb!, coldEnv), "cold-half", (s) =>
        measure("cold-half", `Cold lookups, open loop at 50% of the cold maximum (${rate}/s)`, s, { ...coldSpec(), rate }, opts.tokens, coldEnv),
      ),
    );
  }

  if (want("mixed")) {
    results.push(
      await withServer("service", serviceEnv(mainDb!), "mixed", (s) =>
        measure(
          "mixed",
          `Zipf (s=1) over all ${opts.tokens} tokens, 1% unknown tokens, 5% ungranted scope, RevokeToken for ${smoke ? "1%" : "0.1%"} of requests during the run; every answer checked`,
          s,
          {
            mode: "authorize",
            rate: 0,
            concurrency: opts.concurrency,
            tokensFile: mainTokensFile,
            workingSet: opts.tokens,
            distribution: "zipf",
            unknownFraction: 0.01,
            scopeDeniedFraction: 0.05,
            // 0.1% of requests; the smoke run is too short for that to revoke anything, so it revokes more.
            revokeFraction: smoke ? 0.01 : 0.001,
            revokeCandidates: { ids: seeder!.tokens.ids, zipfExponent: 1 },
          },
          opts.tokens,
          {},
        ),
      ),
    );
  }

  if (want("create")) {
    const accounts = await seeder!.emptyAccounts(smoke ? 100 : 2000);
    const file = join(workDir, "accounts.txt");
    writeFileSync(file, accounts.join("\n") + "\n");
    const before = await countRows(mainDb!.url, `select count(*) as n from audit_events where action = 'token.created'`);
    const concurrency = Math.min(opts.concurrency, 32);
    const r = await withServer("service", serviceEnv(mainDb!), "create", (s) =>
      measure("create", `CreateToken with its audit event (one transaction), closed loop, ${concurrency} in flight`, s, { mode: "create", rate: 0, concurrency, serviceAccountsFile: file }, opts.tokens, {}),
    );
    const after = await countRows(mainDb!.url, `select count(*) as n from audit_events where action = 'token.created'`);
    const created = r.checked - r.errors;
    if (after - before !== created) {
      r.wrongDecisions++;
      r.wrongExamples.push(`${created} tokens created but ${after - before} token.created audit events written`);
    }
    results.push(r);
  }

  if (want("scale")) await scale();

  for (const r of results) if (r.server === "service" && r.mode === "closed-loop" && find("baseline") && r.name !== "create") r.ratioToBaseline = Math.round((r.throughput / find("baseline")!.throughput) * 1000) / 1000;

  const report = buildReport(started);
  const outFile = args.out ? resolve(args.out) : smoke ? join(tmpdir(), `pw-bench-smoke-${runId}.json`) : join(REPO, "bench", "results", `${started.toISOString().slice(0, 19).replace(/[:T]/g, "-")}.json`);
  mkdirSync(resolve(outFile, ".."), { recursive: true });
  writeFileSync(outFile, JSON.stringify(report, null, 2) + "\n");
  log(`results: ${outFile}`);
  if (!smoke && !args["no-markdown"]) {
    writeFileSync(join(REPO, "BENCHMARKS.md"), markdown(report, outFile));
    log(`table: ${join(REPO, "BENCHMARKS.md")}`);
  }
  process.stdout.write(table(report.results) + "\n\n" + targetsTable(report.targets) + "\n");

  // A broken benchmark must not pass: every scenario must have answered, and answered right.
  // UNAVAILABLE (14) is the service failing closed under overload (a lookup past its deadline):
  // reported in the table, not a broken run; any other error status is.
  const failing = (r: (typeof results)[number]) => Object.entries(r.errorCodes ?? {}).some(([code, n]) => code !== "14" && Number(n) > 0);
  const broken = results.filter((r) => r.requests === 0 || r.wrongDecisions > 0 || failing(r));
  for (const r of results) if (r.errors > 0 && !failing(r)) log(`note ${r.name}: ${r.errors} UNAVAILABLE answers (failed closed under overload)`);
  if (broken.length > 0) {
    for (const r of broken) log(`FAILED ${r.name}: requests ${r.requests}, errors ${JSON.stringify(r.errorCodes)}, wrong ${r.wrongDecisions} ${r.wrongExamples.join("; ")}`);
    process.exitCode = 1;
  }
}

async function scale(): Promise<void> {
  const db = await createBenchDatabase(opts.pgAdminUrl);
  databases.push(db);
  const seeder = new Seeder(db.url);
  const steps = [...opts.scaleSteps].sort((a, b) => a - b);
  // Fixed rates for every step, so latencies compare at the same load: half the maxima
  // measured on the main database (or, without them, at the first step).
  let warmRate = find("warm") ? Math.round(find("warm")!.throughput / 2) : 0;
  let coldRate = find("cold") ? Math.round(find("cold")!.throughput / 2) : 0;
  for (const step of steps) {
    const s = await seeder.grow(step);
    const inDb = await countRows(db.url, "select count(*) as n from tokens");
    log(`scale: seeded ${s.inserted} more tokens in ${s.seconds.toFixed(1)} s (${inDb} in ${db.name})`);
    const file = join(workDir, `tokens-scale-${step}.csv`);
    await seeder.writeTokensFile(file);
    const hot = Math.min(opts.hotSet, step);
    const warmSpec: LoadSpec = { mode: "authorize", rate: warmRate, concurrency: opts.concurrency, tokensFile: file, workingSet: hot, distribution: "uniform", prewarm: true };
    const coldEnv = { TOKEN_CACHE_MAX_ENTRIES: "0" };
    const coldSpec: LoadSpec = { mode: "authorize", rate: coldRate, concurrency: opts.concurrency, tokensFile: file, workingSet: step, distribution: "uniform" };
    if (!warmRate) {
      const probe = await withServer("service", serviceEnv(db), `scale-${step}-warm-probe`, (srv) => measure(`scale-${step}-warm-max`, "probe", srv, { ...warmSpec, rate: 0 }, inDb, {}));
      results.push(probe);
      warmRate = Math.round(probe.throughput / 2);
      warmSpec.rate = warmRate;
    }
    if (!coldRate) {
      const probe = await withServer("service", serviceEnv(db, coldEnv), `scale-${step}-cold-probe`, (srv) => measure(`scale-${step}-cold-max`, "probe", srv, { ...coldSpec, rate: 0 }, inDb, coldEnv));
      results.push(probe);
      coldRate = Math.round(probe.throughput / 2);
      coldSpec.rate = coldRate;
    }
    results.push(
      await withServer("service", serviceEnv(db), `scale-${step}-warm`, (srv) =>
        measure(`scale-${step}-warm`, `${inDb} tokens in the database; ${hot} hot tokens, open loop at ${warmRate}/s`, srv, warmSpec, inDb, {}),
      ),
    );
    results.push(
      await withServer("service", serviceEnv(db, coldEnv), `scale-${step}-cold`, (srv) =>
        measure(`scale-${step}-cold`, `${inDb} tokens in the database; cache disabled, uniform over all, open loop at ${coldRate}/s`, srv, coldSpec, inDb, coldEnv),
      ),
    );
    results.push(
      await withServer("service", serviceEnv(db), `scale-${step}-fill`, (srv) =>
        measure(
          `scale-${step}-fill`,
          `${inDb} tokens in the database; default cache (bounded), uniform over all tokens, closed loop: fills the cache, for RSS`,
          srv,
          { ...coldSpec, rate: 0 },
          inDb,
          {},
        ),
      ),
    );
    rmSync(file, { force: true });
  }
}

// ---------------------------------------------------------------- report

interface Target {
  target: string;
  measured: string;
  met: boolean | null;
}

function buildReport(started: Date) {
  return {
    date: started.toISOString(),
    machine: { cores: cpus().length, cpuModel: cpus()[0]?.model ?? "unknown", node: process.version, platform: `${process.platform} ${process.arch}` },
    commandLine: `node ${process.argv.slice(1).map((a) => a.replace(REPO + "/", "")).join(" ")}`,
    options: { ...opts, pgAdminUrl: undefined, redisUrl: undefined },
    results,
    targets: evaluateTargets(),
  };
}

function evaluateTargets(): Target[] {
  const t: Target[] = [];
  const warm = find("warm");
  const base = find("baseline");
  if (warm && base) {
    const ratio = warm.throughput / base.throughput;
    t.push({ target: "Warm Authorize throughput >= 70% of the no-op baseline", measured: `${(ratio * 100).toFixed(1)}% (${warm.throughput}/s vs ${base.throughput}/s)`, met: ratio >= 0.7 });
  }
  const half = find("half");
  if (half) t.push({ target: "p99 <= 2 ms at 50% of maximum throughput", measured: `p99 ${half.latencyMs.p99} ms at ${half.targetRate}/s`, met: half.latencyMs.p99 <= 2 });
  const coldHalf = find("cold-half");
  if (coldHalf) t.push({ target: "Cold lookups p99 <= 5 ms (at 50% of the cold maximum)", measured: `p99 ${coldHalf.latencyMs.p99} ms at ${coldHalf.targetRate}/s`, met: coldHalf.latencyMs.p99 <= 5 });
  const steps = [...opts.scaleSteps].sort((a, b) => a - b);
  const lo = steps[0];
  const hi = steps[steps.length - 1];
  if (lo !== undefined && hi !== undefined && lo !== hi) {
    for (const kind of ["warm", "cold"]) {
      const a = find(`scale-${lo}-${kind}`);
      const b = find(`scale-${hi}-${kind}`);
      if (a && b) {
        const r50 = b.latencyMs.p50 / a.latencyMs.p50;
        const r99 = b.latencyMs.p99 / a.latencyMs.p99;
        t.push({
          target: `Latency at ${hi} tokens within 1.2x of ${lo} (${kind}, same rate)`,
          measured: `p50 ${a.latencyMs.p50} -> ${b.latencyMs.p50} ms (${r50.toFixed(2)}x), p99 ${a.latencyMs.p99} -> ${b.latencyMs.p99} ms (${r99.toFixed(2)}x)`,
          met: r50 <= 1.2 && r99 <= 1.2,
        });
      }
    }
    const big = results.filter((r) => r.name.startsWith(`scale-${hi}-`));
    if (big.length) {
      const rss = Math.max(...big.map((r) => r.serverRssMaxMB));
      const fill = find(`scale-${hi}-fill`);
      t.push({ target: `Server RSS <= 250 MB with ${hi} tokens in the database`, measured: `max ${rss} MB${fill?.cache ? ` (cache ${fill.cache.size} entries after the fill run)` : ""}`, met: rss <= 250 });
    }
  }
  const checked = results.filter((r) => r.server === "service");
  if (checked.length) {
    const wrong = checked.reduce((a, r) => a + r.wrongDecisions, 0);
    const mixed = find("mixed");
    t.push({
      target: "Zero wrong decisions (every answer checked; mixed run with revocations)",
      measured:
        `${wrong} wrong of ${checked.reduce((a, r) => a + r.checked, 0)} checked, ${checked.reduce((a, r) => a + r.errors, 0)} error statuses (fail-closed UNAVAILABLE, not decisions)` +
        (mixed ? `; mixed: ${mixed.revocations} revocations, ${mixed.allowedAfterRevoke} allowed after revoke` : ""),
      met: wrong === 0,
    });
  }
  return t;
}

function table(rs: ScenarioResult[]): string {
  const head = "| scenario | load | tokens in DB | throughput /s | vs no-op | p50 ms | p95 ms | p99 ms | p99.9 ms | open loop from send p50/p99 ms | server CPU % | server CPU µs/req | server RSS MB (max) | PG CPU % | Redis CPU % | loadgen CPU % | other CPU % | errors | wrong | cache hit |";
  const sep = "|" + head.split("|").slice(1, -1).map(() => "---").join("|") + "|";
  const rows = rs.map((r) =>
    [
      r.name,
      r.mode === "closed-loop" ? `closed, ${r.concurrency} in flight` : `open, ${r.targetRate}/s`,
      r.tokensInDatabase ?? "-",
      r.throughput,
      r.ratioToBaseline !== undefined ? `${(r.ratioToBaseline * 100).toFixed(0)}%` : "-",
      r.latencyMs.p50,
      r.latencyMs.p95,
      r.latencyMs.p99,
      r.latencyMs.p999,
      r.latencyFromSendMs ? `${r.latencyFromSendMs.p50} / ${r.latencyFromSendMs.p99}` : "-",
      r.serverCpuPercent,
      r.serverCpuUsPerRequest,
      r.serverRssMaxMB,
      r.postgresCpuPercent,
      r.redisCpuPercent,
      r.loadgenCpuPercent,
      r.otherCpuPercent,
      r.errors,
      r.wrongDecisions,
      r.cache ? `${(r.cache.hitRatio * 100).toFixed(1)}%` : "-",
    ].join(" | "),
  );
  return [head, sep, ...rows.map((r) => `| ${r} |`)].join("\n");
}

function targetsTable(ts: Target[]): string {
  return ["| target | measured | met |", "|---|---|---|", ...ts.map((t) => `| ${t.target} | ${t.measured} | ${t.met === null ? "-" : t.met ? "yes" : "**no**"} |`)].join("\n");
}

function markdown(report: ReturnType<typeof buildReport>, outFile: string): string {
  const existing = (() => {
    try {
      return readFileSync(join(REPO, "BENCHMARKS.md"), "utf8");
    } catch {
      return "";
    }
  })();
  const generated = [
    "<!-- bench:results:start (written by `npm run bench`; everything outside these markers is kept) -->",
    `Run ${report.date} on ${report.machine.cores} cores (${report.machine.cpuModel}), Node ${report.machine.node}, ${report.machine.platform}.`,
    "",
    `Command: \`${report.commandLine}\` — JSON: \`${outFile.replace(REPO + "/", "")}\`. Per scenario: ${opts.warmupMs / 1000} s warm-up, ${opts.durationMs / 1000} s measured, ${opts.loadgens} load-generator processes.`,
    "",
    table(report.results),
    "",
    "Scenarios:",
    "",
    ...report.results.map((r) => `- **${r.name}**: ${r.description}${r.revocations ? ` (${r.revocations} revocations, ${r.allowedAfterRevoke} allowed after revoke, ${r.ambiguousInRevokeWindow} answers inside a revoke window)` : ""}.`),
    "",
    "Targets:",
    "",
    targetsTable(report.targets),
    "<!-- bench:results:end -->",
  ].join("\n");
  const start = existing.indexOf("<!-- bench:results:start");
  const end = existing.indexOf("<!-- bench:results:end -->");
  if (start >= 0 && end > start) return existing.slice(0, start) + generated + existing.slice(end + "<!-- bench:results:end -->".length);
  return (existing || "# Benchmarks\n\n") + "\n" + generated + "\n";
}

// ---------------------------------------------------------------- cleanup

async function cleanup(): Promise<void> {
  // The autogroup is the whole session's (the shell that started the run too): put it back.
  if (autogroupBefore !== undefined) {
    try {
      writeFileSync("/proc/self/autogroup", autogroupBefore);
    } catch {
      // gone with the session
    }
  }
  await Promise.all([...children].map((c) => stopChild(c, 5000)));
  for (const db of databases) await db.drop().catch((err: Error) => log(`could not drop ${db.name}: ${err.message}`));
  const redis = new Redis(opts.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    // Only this run's keys: every server's prefix starts with {bench<runId>-.
    let cursor = "0";
    let deleted = 0;
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `{${redisPrefixBase}-*`, "COUNT", 1000);
      cursor = next;
      if (keys.length) deleted += await redis.del(...keys);
    } while (cursor !== "0");
    if (deleted) log(`deleted ${deleted} Redis keys of this run`);
  } catch (err) {
    log(`could not clean Redis keys: ${(err as Error).message}`);
  } finally {
    redis.disconnect();
  }
  rmSync(workDir, { recursive: true, force: true });
}

let cleaning: Promise<void> | undefined;
const onSignal = (sig: string) => {
  log(`${sig}: cleaning up`);
  cleaning ??= cleanup();
  void cleaning.then(() => process.exit(130));
};
process.on("SIGINT", () => onSignal("SIGINT"));
process.on("SIGTERM", () => onSignal("SIGTERM"));

main()
  .catch((err: unknown) => {
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  })
  .finally(async () => {
    cleaning ??= cleanup();
    await cleaning;
  });

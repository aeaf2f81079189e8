/**
 * Shared by the benchmark's processes: clocks, /proc sampling, percentiles and the messages
 * the orchestrator exchanges with its children over IPC. Not used by the service.
 */
import { readdirSync, readFileSync } from "node:fs";

/**
 * Microseconds on CLOCK_MONOTONIC. libuv's hrtime reads the system-wide monotonic clock, so
 * values taken in different processes on this machine are comparable: the load generators
 * judge answers against revocation times taken in the orchestrator.
 */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS; // utime, stime
  } catch {
    return 0;
  }
}

/** Resident set size in bytes, from /proc/<pid>/status. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Pids of processes whose command name is `comm` (postgres, redis-server). */
export function pidsByComm(comm: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() === comm) out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

/** CPU seconds used so far by every process named `comm` (children that exited are not counted). */
export function cpuSecondsByComm(comm: string): Map<number, number> {
  const m = new Map<number, number>();
  for (const pid of pidsByComm(comm)) m.set(pid, cpuSeconds(pid));
  return m;
}

export function cpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, s] of after) total += s - (before.get(pid) ?? 0);
  return total;
}

/** Whole-machine busy/total jiffies from /proc/stat, to see how loaded the machine was. */
export function machineJiffies(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Percentile (0..100) of an ascending sorted array, nearest-rank. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** A growable Float64Array. */
export class Samples {
  data = new Float64Array(1 << 16);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  view(): Float64Array {
    return this.data.subarray(0, this.length);
  }
}

export const BENCH_ORG = "org_bench";
/** What every seeded token holds; requests ask for SCOPE_GRANTED (allowed) or SCOPE_NOT_GRANTED. */
export const SEED_SCOPES = ["projects:read", "usage:read", "api_keys:read"];
export const SCOPE_GRANTED = "projects:read";
export const SCOPE_NOT_GRANTED = "api_keys:create";

/** Zipf sampler over ranks 0..n-1 (rank r has weight 1/(r+1)^s): cumulative table + binary search. */
export function zipfSampler(n: number, s: number, random: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let r = 0; r < n; r++) cdf[r] = sum += 1 / Math.pow(r + 1, s);
  return () => {
    const x = random() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** Messages between the orchestrator and a load generator. */
export type LoadMode = "authorize" | "create";

export interface LoadgenConfig {
  worker: number;
  workers: number;
  address: string;
  mode: LoadMode;
  /** Closed loop: requests in flight in this process. */
  concurrency: number;
  /** Open loop: requests per second from this process (0 = closed loop). */
  rate: number;
  warmupMs: number;
  durationMs: number;
  /** Authorize: file with one `secret,tokenId` per line. */
  tokensFile?: string;
  /** Authorize: how many of the file's tokens to draw from (the first N). */
  workingSet?: number;
  distribution?: "uniform" | "zipf";
  zipfExponent?: number;
  /** Fraction of requests with a well-formed token that was never issued. */
  unknownFraction?: number;
  /** Fraction of requests asking for a scope the token does not hold. */
  scopeDeniedFraction?: number;
  /** Create: file with one service account id per line (this worker takes every workers-th). */
  serviceAccountsFile?: string;
  organizationId: string;
  /** Before arming, ask once for every token of the working set this worker owns (a warm cache, as in steady state). */
  prewarm?: boolean;
  /** Check every answer against what the request expects (off for the no-op server, which answers one fixed principal). */
  verify: boolean;
  /** Where to write the latency samples (Float64 µs, little endian). */
  samplesFile: string;
  /** Seed for the token choice, so workers don't walk in step. */
  seed: number;
}

export interface RevocationEvent {
  idx: number;
  /** µs (nowUs) just before RevokeToken was sent and when it returned OK. */
  startUs: number;
  okUs: number;
}

export type ToLoadgen =
  | { type: "start"; config: LoadgenConfig }
  /** Every process starts its clock at t0Us: warm-up until t0 + warmup, then the measured window. */
  | { type: "go"; t0Us: number }
  | { type: "revoked"; event: RevocationEvent }
  | { type: "finish" };

export interface LoadgenResult {
  worker: number;
  /** Requests completed inside the measured window. */
  completed: number;
  errors: number;
  errorCodes: Record<string, number>;
  /** Open loop: requests not sent because too many were in flight. */
  dropped: number;
  measuredMs: number;
  reasons: Record<string, number>;
  /** Answers that did not match what the request expected (all of them are wrong decisions). */
  wrong: number;
  /** Of those: allowed for a token whose RevokeToken had already returned OK. */
  allowedAfterRevoke: number;
  /** Answers for tokens revoked during the run that arrived between revoke start and OK (either answer is right). */
  ambiguousInRevokeWindow: number;
  checked: number;
  wrongExamples: string[];
  cpuSeconds: number;
}

export type FromLoadgen =
  | { type: "ready" }
  /** Tokens loaded and channel connected: waiting for "go". */
  | { type: "armed" }
  | { type: "progress"; worker: number; completed: number }
  | { type: "done"; result: LoadgenResult };

export type FromServer = { type: "ready"; address: string } | { type: "stats"; stats: ServerStats };

export interface ServerStats {
  cacheHits: number;
  cacheMisses: number;
  cacheSize: number;
  negativeSize: number;
  heapUsedBytes: number;
  rssBytes: number;
}

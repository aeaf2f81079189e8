/**
 * A load-generator process: one grpc-js channel (ts-proto client, default options) driving
 * Authorize or CreateToken, closed loop (N requests in flight) or open loop (a fixed rate,
 * latency measured from the intended send time, so a slow server can't hide its queue).
 *
 * Every Authorize answer is checked against what the request expects. Tokens revoked during
 * the run are judged at the end, against the revocation times the orchestrator sends (all
 * processes read the same monotonic clock): an answer to a request sent after RevokeToken
 * returned OK must be TOKEN_REVOKED; one received before RevokeToken was sent must be the
 * normal answer; in between, either is right.
 */
import { credentials, type ServiceError } from "@grpc/grpc-js";
import { readFileSync, writeFileSync } from "node:fs";
import {
  AuthorizationServiceClient,
  type AuthorizeRequest,
  type AuthorizeResponse,
  DecisionReason,
} from "../src/generated/pokerworks/identity/v1/authorization_service";
import { CreateTokenRequest, type CreateTokenResponse, TokenServiceClient } from "../src/generated/pokerworks/identity/v1/token_service";
import { generateToken } from "../src/tokens/token-format";
import { type FromLoadgen, type LoadgenConfig, type LoadgenResult, nowUs, type RevocationEvent, Samples, SCOPE_GRANTED, SCOPE_NOT_GRANTED, type ToLoadgen, zipfSampler } from "./common";

const MAX_IN_FLIGHT_OPEN_LOOP = 4096;
const DRAIN_TIMEOUT_MS = 10_000;

const send = (m: FromLoadgen) => process.send?.(m);

/** mulberry32: small, seeded, good enough to pick tokens. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Growable typed columns for the per-request records that are judged at the end. */
class Records {
  idx = new Int32Array(1 << 16);
  sendUs = new Float64Array(1 << 16);
  recvUs = new Float64Array(1 << 16);
  /** bit 0: asked for a scope not granted; bit 1: allowed; bit 2: principal.tokenId matched; bit 3: error. */
  flags = new Uint8Array(1 << 16);
  reason = new Uint8Array(1 << 16);
  length = 0;
  push(idx: number, sendUs: number, recvUs: number, flags: number, reason: number): void {
    if (this.length === this.idx.length) {
      const grow = <T extends Int32Array | Float64Array | Uint8Array>(a: T): T => {
        const next = new (a.constructor as new (n: number) => T)(a.length * 2);
        next.set(a);
        return next;
      };
      this.idx = grow(this.idx);
      this.sendUs = grow(this.sendUs);
      this.recvUs = grow(this.recvUs);
      this.flags = grow(this.flags);
      this.reason = grow(this.reason);
    }
    const i = this.length++;
    this.idx[i] = idx;
    this.sendUs[i] = sendUs;
    this.recvUs[i] = recvUs;
    this.flags[i] = flags;
    this.reason[i] = reason;
  }
}

const F_SCOPE_DENIED = 1;
const F_ALLOWED = 2;
const F_PRINCIPAL_OK = 4;
const F_ERROR = 8;

async function run(config: LoadgenConfig, go: Promise<number>, finished: Promise<Map<number, RevocationEvent>>): Promise<LoadgenResult> {
  const random = rng(config.seed);
  const address = config.address;
  const creds = credentials.createInsecure();
  const latencies = new Samples();
  /** Open loop: latency from the actual send, without the generator's own scheduling delay. */
  const fromSend = new Samples();
  const errorCodes: Record<string, number> = {};
  const reasons: Record<string, number> = {};
  let completedTotal = 0;
  let completedInWindow = 0;
  let errors = 0;
  let dropped = 0;
  let inFlight = 0;

  let windowStart = Infinity;
  let windowEnd = Infinity;
  let cpuAtStart: NodeJS.CpuUsage | undefined;
  let cpuAtEnd: NodeJS.CpuUsage | undefined;


  const observe = (startedUs: number, doneUs: number, sentUs: number) => {
    completedTotal++;
    if (doneUs >= windowStart && doneUs < windowEnd) {
      completedInWindow++;
      latencies.push(doneUs - startedUs);
      fromSend.push(doneUs - sentUs);
    }
  };

  // One request, whatever the mode; calls `done` when it has an answer.
  let issue: (intendedUs: number, done: () => void) => void;
  let judge: (revocations: Map<number, RevocationEvent>) => Pick<LoadgenResult, "wrong" | "allowedAfterRevoke" | "ambiguousInRevokeWindow" | "checked" | "wrongExamples">;
  let client: AuthorizationServiceClient | TokenServiceClient;
  let prewarm: (() => Promise<void>) | undefined;

  if (config.mode === "authorize") {
    const authorization = new AuthorizationServiceClient(address, creds);
    client = authorization;
    const lines = readFileSync(config.tokensFile!, "utf8").split("\n");
    const n = Math.min(config.workingSet ?? lines.length, lines.length - (lines[lines.length - 1] === "" ? 1 : 0));
    const secrets: string[] = new Array(n);
    const ids: string[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const line = lines[i]!;
      const comma = line.indexOf(",");
      secrets[i] = line.slice(0, comma);
      ids[i] = line.slice(comma + 1);
    }
    lines.length = 0;
    const pick = config.distribution === "zipf" ? zipfSampler(n, config.zipfExponent ?? 1, random) : () => Math.floor(random() * n);
    const unknownFraction = config.unknownFraction ?? 0;
    const scopeDeniedFraction = config.scopeDeniedFraction ?? 0;
    const records = new Records();
    prewarm = async () => {
      // This worker's share of the working set, 16 at a time; answers are not recorded.
      let next = config.worker;
      const one = (): Promise<void> =>
        next >= n
          ? Promise.resolve()
          : new Promise<void>((resolve) => {
              const idx = next;
              next += config.workers;
              authorization.authorize({ token: secrets[idx]!, scope: SCOPE_GRANTED, projectId: "prj_bench", environment: "live", organizationId: "org_bench" }, () => resolve());
            }).then(one);
      await Promise.all(Array.from({ length: 16 }, one));
    };

    issue = (intendedUs, done) => {
      const unknown = unknownFraction > 0 && random() < unknownFraction;
      const idx = unknown ? -1 : pick();
      const scopeDenied = scopeDeniedFraction > 0 && random() < scopeDeniedFraction;
      const req: AuthorizeRequest = {
        token: unknown ? generateToken() : secrets[idx]!,
        scope: scopeDenied ? SCOPE_NOT_GRANTED : SCOPE_GRANTED,
        projectId: "prj_bench",
        environment: "live",
        organizationId: "org_bench",
      };
      const sentUs = nowUs();
      authorization.authorize(req, (err: ServiceError | null, res: AuthorizeResponse) => {
        const doneUs = nowUs();
        let flags = scopeDenied ? F_SCOPE_DENIED : 0;
        let reason = 0;
        if (err) {
          errors++;
          errorCodes[err.code] = (errorCodes[err.code] ?? 0) + 1;
          flags |= F_ERROR;
        } else {
          reason = res.reason;
          const name = DecisionReason[res.reason] ?? String(res.reason);
          reasons[name] = (reasons[name] ?? 0) + 1;
          if (res.allowed) flags |= F_ALLOWED;
          if (idx >= 0 ? res.principal?.tokenId === ids[idx] : res.principal === undefined) flags |= F_PRINCIPAL_OK;
        }
        records.push(idx, sentUs, doneUs, flags, reason);
        observe(intendedUs || sentUs, doneUs, sentUs);
        done();
      });
    };

    judge = (revocations) => {
      let wrong = 0;
      let allowedAfterRevoke = 0;
      let ambiguous = 0;
      const examples: string[] = [];
      const R = DecisionReason;
      for (let i = 0; i < records.length; i++) {
        const idx = records.idx[i]!;
        const flags = records.flags[i]!;
        const reason = records.reason[i]!;
        const allowed = (flags & F_ALLOWED) !== 0;
        let ok: boolean;
        const normal = idx < 0 ? R.DECISION_REASON_TOKEN_UNKNOWN : flags & F_SCOPE_DENIED ? R.DECISION_REASON_SCOPE_NOT_GRANTED : R.DECISION_REASON_ALLOWED;
        const normalOk = reason === normal && allowed === (normal === R.DECISION_REASON_ALLOWED) && (flags & F_PRINCIPAL_OK) !== 0;
        const revokedOk = reason === R.DECISION_REASON_TOKEN_REVOKED && !allowed && (flags & F_PRINCIPAL_OK) !== 0;
        const ev = idx >= 0 ? revocations.get(idx) : undefined;
        // An error status (UNAVAILABLE when it fails closed) is not a decision: counted in `errors`.
        if (flags & F_ERROR) continue;
        if (!ev) ok = normalOk;
        else if (records.sendUs[i]! > ev.okUs) {
          ok = revokedOk;
          if (allowed) allowedAfterRevoke++;
        } else if (records.recvUs[i]! < ev.startUs) ok = normalOk;
        else {
          ok = normalOk || revokedOk;
          ambiguous++;
        }
        if (!ok) {
          wrong++;
          if (examples.length < 5)
            examples.push(
              `token#${idx} ${flags & F_ERROR ? "error" : (R[reason] ?? reason)} allowed=${allowed} principalOk=${(flags & F_PRINCIPAL_OK) !== 0}` +
                (ev ? ` sent ${((records.sendUs[i]! - ev.okUs) / 1000).toFixed(3)} ms after revoke OK` : ""),
            );
        }
      }
      if (!config.verify) return { wrong: 0, allowedAfterRevoke: 0, ambiguousInRevokeWindow: 0, checked: 0, wrongExamples: [] };
      return { wrong, allowedAfterRevoke, ambiguousInRevokeWindow: ambiguous, checked: records.length, wrongExamples: examples };
    };
  } else {
    const tokens = new TokenServiceClient(address, creds);
    client = tokens;
    const all = readFileSync(config.serviceAccountsFile!, "utf8").split("\n").filter(Boolean);
    const accounts = all.filter((_, i) => i % config.workers === config.worker);
    const used = new Uint8Array(accounts.length);
    let next = 0;
    let wrong = 0;
    let checked = 0;
    const examples: string[] = [];
    issue = (intendedUs, done) => {
      // Round robin over this worker's accounts, so concurrent creates rarely lock the same row.
      let tries = 0;
      while (used[next]! >= 50 && tries++ < accounts.length) next = (next + 1) % accounts.length;
      if (tries >= accounts.length) {
        errors++;
        errorCodes["out_of_accounts"] = (errorCodes["out_of_accounts"] ?? 0) + 1;
        setTimeout(done, 10);
        return;
      }
      const account = accounts[next]!;
      used[next] = used[next]! + 1;
      next = (next + 1) % accounts.length;
      const sentUs = nowUs();
      tokens.createToken(
        CreateTokenRequest.fromPartial({
          organizationId: "org_bench",
          serviceAccountId: account,
          label: "bench create",
          scopes: ["projects:read", "usage:read"],
          projectIds: [],
          environments: [],
          actor: { kind: { $case: "userId", value: "user_bench" } },
        }),
        (err: ServiceError | null, res: CreateTokenResponse) => {
          const doneUs = nowUs();
          checked++;
          if (err) {
            errors++;
            errorCodes[err.code] = (errorCodes[err.code] ?? 0) + 1;
            wrong++;
            if (examples.length < 5) examples.push(`CreateToken ${err.code} ${err.details}`);
          } else if (!/^pw_mgmt_[0-9A-Za-z]{38}$/.test(res.secret) || res.token?.serviceAccountId !== account) {
            wrong++;
            if (examples.length < 5) examples.push(`CreateToken answered an unexpected token for ${account}`);
          }
          observe(intendedUs || sentUs, doneUs, sentUs);
          done();
        },
      );
    };
    judge = () => ({ wrong, allowedAfterRevoke: 0, ambiguousInRevokeWindow: 0, checked, wrongExamples: examples });
  }

  // Connect before the clock matters.
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())));
  if (config.prewarm && prewarm) await prewarm();
  send({ type: "armed" });
  const t0 = await go;
  windowStart = t0 + config.warmupMs * 1000;
  windowEnd = windowStart + config.durationMs * 1000;
  const progress = setInterval(() => send({ type: "progress", worker: config.worker, completed: completedTotal }), 200);

  const cpuTimer = setTimeout(() => (cpuAtStart = process.cpuUsage()), Math.max(0, (windowStart - nowUs()) / 1000));
  const cpuEndTimer = setTimeout(() => (cpuAtEnd = process.cpuUsage()), Math.max(0, (windowEnd - nowUs()) / 1000));

  await new Promise<void>((resolve) => {
    let stopped = false;
    const maybeResolve = () => {
      if (stopped && inFlight === 0) resolve();
    };
    if (config.rate > 0) {
      // Open loop: request k is due at start + k / rate; latency counts from then.
      const start = nowUs();
      const intervalUs = 1e6 / config.rate;
      let sent = 0;
      const tick = () => {
        const now = nowUs();
        if (now >= windowEnd) {
          stopped = true;
          maybeResolve();
          return;
        }
        const due = Math.floor((now - start) / intervalUs);
        while (sent < due) {
          const intended = start + sent * intervalUs;
          sent++;
          if (inFlight >= MAX_IN_FLIGHT_OPEN_LOOP) {
            dropped++;
            continue;
          }
          inFlight++;
          issue(intended, () => {
            inFlight--;
            maybeResolve();
          });
        }
        setTimeout(tick, 1);
      };
      tick();
    } else {
      const lane = () => {
        if (nowUs() >= windowEnd) {
          stopped = true;
          maybeResolve();
          return;
        }
        inFlight++;
        issue(0, () => {
          inFlight--;
          lane();
        });
      };
      for (let i = 0; i < config.concurrency; i++) lane();
    }
    setTimeout(() => {
      stopped = true;
      resolve();
    }, config.warmupMs + config.durationMs + DRAIN_TIMEOUT_MS).unref();
  });
  clearTimeout(cpuTimer);
  clearTimeout(cpuEndTimer);
  clearInterval(progress);
  send({ type: "progress", worker: config.worker, completed: completedTotal });
  const cpu = cpuAtStart && cpuAtEnd ? (cpuAtEnd.user - cpuAtStart.user + cpuAtEnd.system - cpuAtStart.system) / 1e6 : 0;

  writeFileSync(config.samplesFile, Buffer.from(latencies.view().buffer, 0, latencies.length * 8));
  writeFileSync(`${config.samplesFile}.send`, Buffer.from(fromSend.view().buffer, 0, fromSend.length * 8));
  const revocations = await finished;
  client.close();
  return {
    worker: config.worker,
    completed: completedInWindow,
    errors,
    errorCodes,
    dropped,
    measuredMs: config.durationMs,
    reasons,
    cpuSeconds: cpu,
    ...judge(revocations),
  };
}

const revocations = new Map<number, RevocationEvent>();
let finish: (r: Map<number, RevocationEvent>) => void;
const finished = new Promise<Map<number, RevocationEvent>>((resolve) => (finish = resolve));
let start: (t0Us: number) => void;
const go = new Promise<number>((resolve) => (start = resolve));
process.on("message", (m: ToLoadgen) => {
  if (m.type === "go") start(m.t0Us);
  else if (m.type === "start")
    run(m.config, go, finished).then(
      (result) => {
        send({ type: "done", result });
        process.disconnect?.();
      },
      (err: unknown) => {
        process.stderr.write(`loadgen ${m.config.worker} failed: ${err instanceof Error ? err.stack : String(err)}\n`);
        process.exit(1);
      },
    );
  else if (m.type === "revoked") revocations.set(m.event.idx, m.event);
  else if (m.type === "finish") finish(revocations);
});
process.on("disconnect", () => setTimeout(() => process.exit(0), 100).unref());
send({ type: "ready" });

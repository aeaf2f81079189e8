/**
 * Authorize load for the fault tests: workers call Authorize in a loop on one or more
 * replicas, and every answer is kept with the monotonic time its call started and ended, so
 * a test can judge each answer against what it knew at the time the call started.
 */
import type { ServiceError } from "@grpc/grpc-js";
import { AuthorizationServiceClient, decisionReasonToJSON } from "../../src/generated/pokerworks/identity/v1/authorization_service";
import { credentials, Metadata } from "@grpc/grpc-js";

export interface Observation {
  replica: string;
  token: string;
  /** performance.now() when the call was sent and when its answer arrived. */
  start: number;
  end: number;
  allowed?: boolean;
  reason?: string;
  /** gRPC status code when the call failed. */
  code?: number;
  details?: string;
}

export interface Target {
  name: string;
  address: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class AuthorizeLoad {
  readonly observations: Observation[] = [];
  private running = false;
  private workers: Promise<void>[] = [];
  private readonly clients = new Map<string, AuthorizationServiceClient>();

  constructor(
    private readonly targets: readonly Target[],
    private readonly tokens: readonly string[],
    private readonly options: { workersPerTarget?: number; scope?: string; deadlineMs?: number; pauseMs?: number } = {},
  ) {
    for (const t of targets) this.clients.set(t.name, new AuthorizationServiceClient(t.address, credentials.createInsecure()));
  }

  start(): void {
    this.running = true;
    for (const t of this.targets) for (let i = 0; i < (this.options.workersPerTarget ?? 4); i++) this.workers.push(this.worker(t));
  }

  /** Stops one target's workers (its replica is about to go), the others keep going. */
  private stopped = new Set<string>();
  stopTarget(name: string): void {
    this.stopped.add(name);
  }

  private async worker(target: Target): Promise<void> {
    const client = this.clients.get(target.name)!;
    while (this.running && !this.stopped.has(target.name)) {
      const token = this.tokens[Math.floor(Math.random() * this.tokens.length)]!;
      const start = performance.now();
      const o: Observation = await new Promise((resolve) =>
        client.authorize(
          { token, scope: this.options.scope ?? "projects:read", projectId: "", environment: "", organizationId: "" },
          new Metadata(),
          { deadline: Date.now() + (this.options.deadlineMs ?? 5_000) },
          (err: ServiceError | null, res) =>
            resolve(
              err
                ? { replica: target.name, token, start, end: performance.now(), code: err.code, details: err.details }
                : { replica: target.name, token, start, end: performance.now(), allowed: res.allowed, reason: decisionReasonToJSON(res.reason) },
            ),
        ),
      );
      this.observations.push(o);
      if (o.code !== undefined) await sleep(20); // a failing replica: don't spin
      else if (this.options.pauseMs) await sleep(this.options.pauseMs);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
    for (const c of this.clients.values()) c.close();
  }
}

/** Counts by a key, for readable assertion messages. */
export function countBy<T>(items: readonly T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of items) out[key(i)] = (out[key(i)] ?? 0) + 1;
  return out;
}

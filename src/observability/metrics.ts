/**
 * Prometheus metrics, served on METRICS_ADDRESS (a separate HTTP port) at /metrics.
 * Label children are cached so the hot path does no label lookups.
 */
import type { MikroORM } from "@mikro-orm/postgresql";
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { DecisionReason, decisionReasonToJSON } from "../generated/pokerworks/identity/v1/authorization_service";
import type { AuthorizerMetrics } from "../authorization/authorizer";
import type { CallObserver } from "../grpc/unary";
import { status as Code } from "@grpc/grpc-js";

const CODE_NAMES = new Map<number, string>(Object.entries(Code).filter(([, v]) => typeof v === "number").map(([k, v]) => [v as number, k]));

export class Metrics implements CallObserver, AuthorizerMetrics {
  readonly registry = new Registry();
  private readonly handled: Histogram<"method" | "code">;
  private readonly decisions: Counter<"reason">;
  private readonly cacheLookups: Counter<"result">;
  private readonly fallbacks: Counter<"kind">;
  private readonly handledChildren = new Map<string, { observe(v: number): void }>();
  private readonly decisionChildren = new Map<DecisionReason, { inc(): void }>();
  private readonly cacheHit: { inc(): void };
  private readonly cacheMiss: { inc(): void };

  constructor(sources: { orm?: MikroORM; cacheSize?: () => number; revocationTrusted?: () => boolean }) {
    collectDefaultMetrics({ register: this.registry });
    this.handled = new Histogram({
      name: "grpc_server_handling_seconds",
      help: "Latency of unary RPCs by method and gRPC status code.",
      labelNames: ["method", "code"],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
    this.decisions = new Counter({ name: "authorize_decisions_total", help: "Authorize decisions by reason.", labelNames: ["reason"], registers: [this.registry] });
    this.cacheLookups = new Counter({
      name: "authorize_token_cache_lookups_total",
      help: "Token record cache lookups by result (hit ratio = hit / (hit + miss)).",
      labelNames: ["result"],
      registers: [this.registry],
    });
    this.cacheHit = this.cacheLookups.labels("hit");
    this.cacheMiss = this.cacheLookups.labels("miss");
    this.fallbacks = new Counter({
      name: "authorize_fallbacks_total",
      help: "Authorize decisions that needed PostgreSQL: postgres_lookup (cache miss) or redis_untrusted (Redis down or restarted empty).",
      labelNames: ["kind"],
      registers: [this.registry],
    });
    const cacheSize = sources.cacheSize;
    if (cacheSize)
      new Gauge({ name: "authorize_token_cache_entries", help: "Token records in the in-process cache.", registers: [this.registry], collect() { this.set(cacheSize()); } });
    const trusted = sources.revocationTrusted;
    if (trusted)
      new Gauge({ name: "revocation_cache_trusted", help: "1 when the revocation markers can be trusted, 0 while deciding from PostgreSQL.", registers: [this.registry], collect() { this.set(trusted() ? 1 : 0); } });
    const orm = sources.orm;
    if (orm) {
      const pool = () => (orm.em.getConnection().getKnex().client as { pool?: { numUsed(): number; numFree(): number; numPendingAcquires(): number } }).pool;
      new Gauge({
        name: "db_pool_connections",
        help: "PostgreSQL pool connections by state (used, free, pending acquires).",
        labelNames: ["state"],
        registers: [this.registry],
        collect() {
          const p = pool();
          if (!p) return;
          this.labels("used").set(p.numUsed());
          this.labels("free").set(p.numFree());
          this.labels("pending").set(p.numPendingAcquires());
        },
      });
    }
  }

  observe(method: string, code: number, seconds: number): void {
    const key = `${method}|${code}`;
    let child = this.handledChildren.get(key);
    if (!child) {
      child = this.handled.labels(method, CODE_NAMES.get(code) ?? String(code));
      this.handledChildren.set(key, child);
    }
    child.observe(seconds);
  }

  decision(reason: DecisionReason): void {
    let child = this.decisionChildren.get(reason);
    if (!child) {
      child = this.decisions.labels(decisionReasonToJSON(reason));
      this.decisionChildren.set(reason, child);
    }
    child.inc();
  }

  cache(hit: boolean): void {
    (hit ? this.cacheHit : this.cacheMiss).inc();
  }

  fallback(kind: "redis_untrusted" | "postgres_lookup"): void {
    this.fallbacks.labels(kind).inc();
  }
}

/** Serves GET /metrics on `address` (host:port). Resolves with the bound address. */
export function serveMetrics(metrics: Metrics, address: string): Promise<{ address: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method === "GET" && req.url?.split("?")[0] === "/metrics") {
      metrics.registry.metrics().then(
        (body) => {
          res.writeHead(200, { "content-type": metrics.registry.contentType });
          res.end(body);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found; metrics are at /metrics\n");
  });
  const m = /^\[?([^\]]+)\]?:(\d+)$/.exec(address)!;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(m[2]), m[1], () => {
      const bound = server.address() as { port: number };
      resolve({
        address: `${m[1]!.includes(":") ? `[${m[1]}]` : m[1]}:${bound.port}`,
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}

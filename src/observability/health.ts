/**
 * grpc.health.v1.Health, per service and overall (""). A probe runs every interval:
 * NOT_SERVING while PostgreSQL does not answer, or while the revocation markers can't be
 * trusted (Redis down or restarted empty and not yet rebuilt) for the services that need
 * them; everything NOT_SERVING once shutdown begins.
 */
import type { Server } from "@grpc/grpc-js";
import type { MikroORM } from "@mikro-orm/postgresql";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import type { Logger } from "pino";
import { SERVICE_NAMES } from "../grpc/server";

export interface HealthSources {
  orm: MikroORM;
  revocationTrusted: () => boolean;
  log: Logger;
  intervalMs: number;
  timeoutMs: number;
}

export class HealthMonitor {
  private readonly impl = new HealthImplementation({
    "": "NOT_SERVING",
    [SERVICE_NAMES.serviceAccounts]: "NOT_SERVING",
    [SERVICE_NAMES.tokens]: "NOT_SERVING",
    [SERVICE_NAMES.audit]: "NOT_SERVING",
    [SERVICE_NAMES.authorization]: "NOT_SERVING",
    [SERVICE_NAMES.tokenPolicies]: "NOT_SERVING",
  });
  private timer: NodeJS.Timeout | undefined;
  private draining = false;
  private last = new Map<string, ServingStatus>();
  postgresOk = false;

  constructor(private readonly sources: HealthSources) {}

  addToServer(server: Server): void {
    this.impl.addToServer(server);
  }

  async start(): Promise<void> {
    await this.probe();
    this.timer = setInterval(() => void this.probe(), this.sources.intervalMs);
    this.timer.unref();
  }

  async probe(): Promise<void> {
    if (this.draining) return;
    this.postgresOk = await this.pingPostgres();
    const trusted = this.sources.revocationTrusted();
    const both = this.postgresOk && trusted ? "SERVING" : "NOT_SERVING";
    this.set("", both);
    this.set(SERVICE_NAMES.serviceAccounts, both);
    this.set(SERVICE_NAMES.tokens, both);
    this.set(SERVICE_NAMES.authorization, both);
    this.set(SERVICE_NAMES.audit, this.postgresOk ? "SERVING" : "NOT_SERVING");
    this.set(SERVICE_NAMES.tokenPolicies, this.postgresOk ? "SERVING" : "NOT_SERVING");
  }

  /** Shutdown: everything NOT_SERVING from now on. */
  drain(): void {
    this.draining = true;
    if (this.timer) clearInterval(this.timer);
    for (const name of ["", ...Object.values(SERVICE_NAMES)]) this.set(name, "NOT_SERVING");
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private set(service: string, status: ServingStatus): void {
    if (this.last.get(service) !== status) {
      this.last.set(service, status);
      this.sources.log.info({ grpc_service: service || "(overall)", status }, "health status changed");
    }
    this.impl.setStatus(service, status);
  }

  private async pingPostgres(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.sources.orm.em.getConnection().execute("select 1"),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("timeout")), this.sources.timeoutMs);
        }),
      ]);
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A grpc.health.v1.Health client built from grpc-health-check's own proto. */
import { credentials, loadPackageDefinition, type Client, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath } from "grpc-health-check";

const definition = loadSync(protoPath, { keepCase: true, enums: String, defaults: true });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const HealthCtor = (loadPackageDefinition(definition) as any).grpc.health.v1.Health as new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client & {
  check(req: { service: string }, cb: (err: ServiceError | null, res: { status: string }) => void): void;
  watch(req: { service: string }): ClientReadableStream<{ status: string }>;
};

export class HealthClient {
  private readonly client;
  constructor(address: string) {
    this.client = new HealthCtor(address, credentials.createInsecure());
  }
  check(service = ""): Promise<string> {
    return new Promise((resolve, reject) => this.client.check({ service }, (err, res) => (err ? reject(err) : resolve(res.status))));
  }
  watch(service = ""): { statuses: string[]; cancel(): void } {
    const statuses: string[] = [];
    const stream = this.client.watch({ service });
    stream.on("data", (m: { status: string }) => statuses.push(m.status));
    stream.on("error", () => undefined);
    return { statuses, cancel: () => stream.cancel() };
  }
  /** Polls Check until it reports `want`. */
  async waitFor(want: string, service = "", timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      last = await this.check(service).catch((e: Error) => `error: ${e.message}`);
      if (last === want) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`health of '${service}' stayed ${last}, expected ${want}`);
  }
  close(): void {
    this.client.close();
  }
}

/**
 * Container health probe: `node dist/src/healthcheck.js` asks this replica's
 * grpc.health.v1.Health for the overall status and exits 0 only when it is SERVING.
 * It dials LISTEN_ADDRESS (a wildcard host becomes loopback). Plaintext only: with mutual TLS
 * on, probe with a client certificate from outside instead (e.g. grpc_health_probe).
 */
import { credentials, loadPackageDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath } from "grpc-health-check";

const listen = process.env.LISTEN_ADDRESS ?? "127.0.0.1:50051";
const target = listen.replace(/^(0\.0\.0\.0|\[::\])(?=:)/, "127.0.0.1");
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const pkg = loadPackageDefinition(loadSync(protoPath, { keepCase: true, enums: String })) as any;
const client = new pkg.grpc.health.v1.Health(target, credentials.createInsecure());
client.check({ service: process.argv[2] ?? "" }, { deadline: Date.now() + 2000 }, (err: Error | null, res: { status: string } | undefined) => {
  const status = err ? `error: ${err.message}` : res!.status;
  process.stdout.write(`${target} ${status}\n`);
  process.exit(status === "SERVING" ? 0 : 1);
});

/**
 * Builds dist/ once before the suite: tests that run the service as a separate process
 * (replicas, signals, the embedded start) run `node dist/src/main.js` like production does.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";

export default function setup(): void {
  const root = resolve(__dirname, "../..");
  const tsc = spawnSync(process.execPath, [resolve(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"], { cwd: root, encoding: "utf8" });
  if (!existsSync(resolve(root, "dist/src/main.js"))) throw new Error(`build failed:\n${tsc.stdout}\n${tsc.stderr}`);
  if (tsc.status !== 0) process.stderr.write(`warning: tsc reported errors (dist/ was still written):\n${tsc.stdout}\n`);
}

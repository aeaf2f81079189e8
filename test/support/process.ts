/** Runs the built service (`node dist/src/main.js`) as a separate OS process, like production. */
import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";

export const ROOT = resolve(__dirname, "../..");
export const MAIN = resolve(ROOT, "dist/src/main.js");

export interface ServiceProcess {
  proc: ChildProcess;
  address: string;
  /** Every line the process wrote to stdout and stderr so far. */
  output: string[];
  /** Resolves with the exit code once the process exits. */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts the service and resolves once it logs that it listens. Rejects if it exits first. */
export function startServiceProcess(env: Record<string, string>, timeoutMs = 30_000): Promise<ServiceProcess> {
  const proc = spawn(process.execPath, [MAIN], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`service did not start in ${timeoutMs} ms:\n${output.join("\n")}`));
    }, timeoutMs);
    const onLine = (line: string) => {
      output.push(line);
      const m = /"address":"([^"]+)"/.exec(line);
      if (m && line.includes("listening")) {
        clearTimeout(timer);
        resolvePromise({
          proc,
          address: m[1]!,
          output,
          exited,
          kill: (signal = "SIGTERM") => {
            if (proc.exitCode === null) proc.kill(signal);
            return exited;
          },
        });
      }
    };
    for (const stream of [proc.stdout!, proc.stderr!]) {
      let buffer = "";
      stream.on("data", (chunk: Buffer) => {
        buffer += chunk.toString("utf8");
        let i: number;
        while ((i = buffer.indexOf("\n")) >= 0) {
          onLine(buffer.slice(0, i));
          buffer = buffer.slice(i + 1);
        }
      });
    }
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`service exited with ${code} before listening:\n${output.join("\n")}`));
    });
  });
}

/** Runs the service expecting it to refuse to start; resolves with its exit code and output. */
export function runServiceExpectingExit(env: Record<string, string>, timeoutMs = 20_000): Promise<{ code: number | null; output: string }> {
  const proc = spawn(process.execPath, [MAIN], { cwd: ROOT, env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  proc.stdout!.on("data", (c: Buffer) => (output += c.toString()));
  proc.stderr!.on("data", (c: Buffer) => (output += c.toString()));
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`service did not exit in ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, output });
    });
  });
}

/**
 * Private PostgreSQL and Redis instances for tests that stop, kill or empty them. The
 * shared servers on 5432/6379 are never touched. Each instance lives in a temp directory on
 * a free loopback port and is removed by stop().
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chownSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A private redis-server that keeps nothing on disk, like production's. */
export class PrivateRedis {
  private proc: ChildProcess | undefined;
  private constructor(readonly port: number) {}

  static async start(port?: number): Promise<PrivateRedis> {
    const r = new PrivateRedis(port ?? (await freePort()));
    await r.start();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  private ping(): boolean {
    try {
      return execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", String(this.port), "ping"], { stdio: "pipe", timeout: 2000 }).toString().trim() === "PONG";
    } catch {
      return false;
    }
  }

  async start(): Promise<void> {
    this.proc = spawn("redis-server", ["--bind", "127.0.0.1", "--port", String(this.port), "--save", "", "--appendonly", "no"], { stdio: "ignore" });
    await waitFor(() => this.ping(), `redis on ${this.port}`);
  }

  /** SIGKILL: everything in it is lost. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await exited;
    this.proc = undefined;
  }

  /** Kill it and start a new, empty one on the same port. */
  async restartEmpty(): Promise<void> {
    await this.kill();
    await this.start();
  }

  async stop(): Promise<void> {
    await this.kill();
  }
}

/** A private PostgreSQL cluster (initdb + pg_ctl, run as the postgres OS user when root). */
export class PrivatePostgres {
  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  static async start(): Promise<PrivatePostgres> {
    const bin = PrivatePostgres.binDir();
    const dir = mkdtempSync(join(tmpdir(), "pw-pg-"));
    const pg = new PrivatePostgres(await freePort(), dir);
    if (process.getuid?.() === 0) chownSync(dir, Number(execFileSync("id", ["-u", "postgres"]).toString()), Number(execFileSync("id", ["-g", "postgres"]).toString()));
    pg.run(`${bin}/initdb`, ["-D", join(dir, "data"), "-A", "trust", "-U", "postgres", "--no-sync"]);
    await pg.start();
    return pg;
  }

  private static binDir(): string {
    const versions = readdirSync("/usr/lib/postgresql").sort();
    return `/usr/lib/postgresql/${versions[versions.length - 1]}/bin`;
  }

  get url(): string {
    return `postgresql://postgres@127.0.0.1:${this.port}/postgres`;
  }

  private run(cmd: string, args: string[]): void {
    if (process.getuid?.() === 0) execFileSync("su", ["postgres", "-s", "/bin/sh", "-c", [cmd, ...args.map((a) => `'${a}'`)].join(" ")], { stdio: "pipe" });
    else execFileSync(cmd, args, { stdio: "pipe" });
  }

  async start(): Promise<void> {
    const bin = PrivatePostgres.binDir();
    this.run(`${bin}/pg_ctl`, [
      "-D",
      join(this.dir, "data"),
      "-l",
      join(this.dir, "log"),
      "-w",
      "-o",
      `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`,
      "start",
    ]);
  }

  /** Fast shutdown: connections are cut. */
  async stop(): Promise<void> {
    const bin = PrivatePostgres.binDir();
    try {
      this.run(`${bin}/pg_ctl`, ["-D", join(this.dir, "data"), "-m", "immediate", "-w", "stop"]);
    } catch {
      // already stopped
    }
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

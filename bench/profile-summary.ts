/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`, e.g. `npm run bench -- --profile warm`):
 * self time by function and by package/area, and inclusive time of the service's own
 * functions, so the hot path can be read without a browser.
 *
 *   node dist/bench/profile-summary.js bench/results/profiles/CPU....cpuprofile [--top 40]
 */
import { readFileSync } from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
  hitCount?: number;
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function area(url: string, fn: string): string {
  if (url === "") return fn.startsWith("(") ? fn : "(native)";
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  if (url.startsWith("node:")) return url;
  const s = /\/(dist\/)?(src|bench)\/(.*?)(\.js|\.ts)$/.exec(url);
  if (s) return `${s[2]}/${s[3]}`;
  return url;
}

function main(): void {
  const file = process.argv[2];
  if (!file) throw new Error("usage: profile-summary FILE.cpuprofile [--top N]");
  const top = Number(process.argv[process.argv.indexOf("--top") + 1]) || 40;
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Self time per node from samples and time deltas.
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idle = [...self.entries()].filter(([id]) => byId.get(id)!.callFrame.functionName === "(idle)").reduce((a, [, v]) => a + v, 0);
  const busy = total - idle;
  const pct = (us: number) => `${((us / busy) * 100).toFixed(1)}%`;

  const fnSelf = new Map<string, number>();
  const areaSelf = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    if (n.callFrame.functionName === "(idle)") continue;
    const key = `${n.callFrame.functionName || "(anonymous)"} ${area(n.callFrame.url, n.callFrame.functionName)}:${n.callFrame.lineNumber + 1}`;
    fnSelf.set(key, (fnSelf.get(key) ?? 0) + us);
    const a = area(n.callFrame.url, n.callFrame.functionName);
    areaSelf.set(a, (areaSelf.get(a) ?? 0) + us);
    // Inclusive time of each of the service's own functions on the stack (counted once per sample).
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      const ar = area(f.url, f.functionName);
      if (!ar.startsWith("src/")) continue;
      const k = `${f.functionName || "(anonymous)"} ${ar}:${f.lineNumber + 1}`;
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
  }
  const print = (title: string, m: Map<string, number>, n: number) => {
    process.stdout.write(`\n${title}\n`);
    for (const [k, v] of [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n)) process.stdout.write(`  ${pct(v).padStart(6)}  ${(v / 1000).toFixed(0).padStart(7)} ms  ${k}\n`);
  };
  process.stdout.write(`profile ${((p.endTime - p.startTime) / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(1)} s (${((busy / total) * 100).toFixed(0)}%), idle ${(idle / 1e6).toFixed(1)} s; percentages are of busy time\n`);
  print("Self time by area (package or source file):", areaSelf, 30);
  print(`Self time by function (top ${top}):`, fnSelf, top);
  print("Inclusive time of the service's functions:", inclusive, 30);
}

main();

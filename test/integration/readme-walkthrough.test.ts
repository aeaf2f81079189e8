/**
 * Runs the README's operator walkthrough, command by command, the way grpcurl would: no
 * proto files, only what server reflection serves (through the strict reflection client),
 * JSON in and JSON out. If the README and the service drift apart, this fails.
 */
import { Client, credentials, type ServiceError } from "@grpc/grpc-js";
import { type DescMethod, type FileRegistry, fromBinary, fromJson, type JsonObject, toBinary, toJson } from "@bufbuild/protobuf";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, startTestServer, type TestDatabase, type TestServer } from "../support/harness";
import { describeAll } from "../support/reflection-client";

interface Step {
  capture?: string;
  jq?: string;
  args: string[];
  body?: string;
}

/** Splits a shell word list, honouring single and double quotes. */
function words(line: string): string[] {
  const out: string[] = [];
  const re = /'([^']*)'|"([^"]*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

export function parseWalkthrough(readme: string): Step[] {
  const block = readme.split("<!-- walkthrough:start -->")[1]?.split("<!-- walkthrough:end -->")[0];
  if (!block) throw new Error("README has no walkthrough block");
  const lines = block.split("\n").filter((l) => !l.startsWith("```"));
  const steps: Step[] = [];
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    const step: Step = { args: [] };
    const capture = /^([A-Z_]+)=\$\((.*)$/.exec(line);
    if (capture) {
      step.capture = capture[1];
      line = capture[2]!;
    }
    const jq = /\|\s*jq -r\s+(\S+)\s*$/.exec(line);
    if (jq) {
      step.jq = jq[1]!.replace(/^'|'$/g, "");
      line = line.slice(0, jq.index).trim();
    }
    if (line.endsWith("<<EOF")) {
      line = line.slice(0, -"<<EOF".length).trim();
      const body: string[] = [];
      while (lines[++i]!.trim() !== "EOF") body.push(lines[i]!);
      step.body = body.join("\n");
      if (step.capture) {
        if (lines[++i]!.trim() !== ")") throw new Error(`expected ')' after the here-document of ${step.capture}`);
      }
    }
    step.args = words(line);
    if (step.args[0] !== "grpcurl") throw new Error(`not a grpcurl command: ${line}`);
    steps.push(step);
  }
  return steps;
}

function jqPath(value: unknown, path: string): string {
  let v: unknown = value;
  for (const part of path.replace(/^\./, "").split(".")) {
    const m = /^(\w+)(?:\[(\d+)\])?$/.exec(part);
    if (!m) throw new Error(`unsupported jq path ${path}`);
    v = (v as Record<string, unknown>)?.[m[1]!];
    if (m[2] !== undefined) v = (v as unknown[])?.[Number(m[2])];
  }
  if (typeof v !== "string") throw new Error(`jq ${path} found no string in ${JSON.stringify(value)}`);
  return v;
}

let db: TestDatabase;
let server: TestServer;
let registry: FileRegistry;
let services: string[];

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db.url);
  ({ registry, services } = await describeAll(server.container.address, "v1"));
});
afterAll(async () => {
  await server?.stop();
  await db?.drop();
});

function invoke(method: DescMethod, json: JsonObject): Promise<JsonObject> {
  const client = new Client(server.container.address, credentials.createInsecure());
  return new Promise((resolvePromise, reject) => {
    client.makeUnaryRequest(
      `/${method.parent.typeName}/${method.name}`,
      (r: unknown) => Buffer.from(toBinary(method.input, r as never)),
      (b: Buffer) => fromBinary(method.output, b),
      fromJson(method.input, json),
      (err: ServiceError | null, res?: unknown) => {
        client.close();
        if (err) reject(err);
        else resolvePromise(toJson(method.output, res as never) as JsonObject);
      },
    );
  });
}

describe("the README walkthrough", () => {
  it("runs as written, through server reflection only", async () => {
    const steps = parseWalkthrough(readFileSync(resolve(__dirname, "../../README.md"), "utf8"));
    expect(steps.length).toBeGreaterThanOrEqual(10);
    const vars: Record<string, string> = {};
    const outputs: { method: string; out: JsonObject }[] = [];
    for (const step of steps) {
      const args = step.args.slice(1);
      expect(args[0]).toBe("-plaintext");
      let data: string | undefined;
      const rest: string[] = [];
      for (let i = 1; i < args.length; i++) {
        if (args[i] === "-d") data = args[++i] === "@" ? step.body : args[i];
        else rest.push(args[i]!);
      }
      const [address, verb, symbol] = rest;
      expect(address).toBe("localhost:50051");
      if (verb === "list") {
        expect(services).toEqual(expect.arrayContaining(["pokerworks.identity.v1.ServiceAccountService", "pokerworks.identity.v1.TokenService", "pokerworks.identity.v1.AuditService", "pokerworks.identity.v1.AuthorizationService", "grpc.health.v1.Health"]));
        continue;
      }
      if (verb === "describe") {
        expect(registry.getService(symbol!)?.methods.length).toBeGreaterThan(0);
        continue;
      }
      const [serviceName, methodName] = verb!.split("/");
      const method = registry.getService(serviceName!)?.methods.find((m) => m.name === methodName);
      expect(method, verb).toBeDefined();
      const json = JSON.parse((data ?? "{}").replace(/\$([A-Z_]+)/g, (_, name: string) => vars[name] ?? `$${name}`)) as JsonObject;
      expect(JSON.stringify(json)).not.toMatch(/\$[A-Z_]+/);
      const out = await invoke(method!, json);
      outputs.push({ method: methodName!, out });
      if (step.capture) vars[step.capture] = jqPath(out, step.jq!);
    }

    expect(vars.SA_ID).toMatch(/^sa_/);
    expect(vars.TOKEN).toMatch(/^pw_mgmt_/);
    expect(vars.TOKEN_ID).toMatch(/^tok_/);
    const decisions = outputs.filter((o) => o.method === "Authorize").map((o) => o.out);
    expect(decisions).toHaveLength(3);
    expect(decisions[0]).toMatchObject({ allowed: true, reason: "DECISION_REASON_ALLOWED" });
    expect(decisions[1]).toMatchObject({ reason: "DECISION_REASON_ENVIRONMENT_NOT_ALLOWED" });
    expect(decisions[1]!.allowed).toBeUndefined(); // false is the default, which grpcurl does not print
    expect(decisions[2]).toMatchObject({ reason: "DECISION_REASON_TOKEN_REVOKED" });
    const audit = outputs.find((o) => o.method === "ListAuditEvents")!.out as { events: { action: string }[] };
    expect(audit.events.map((e) => e.action)).toEqual(["token.revoked", "token.created", "service_account.created"]);
    expect(outputs.find((o) => o.method === "Check")!.out).toEqual({ status: "SERVING" });
    // The secret came back once, from CreateToken, and from nothing else.
    const mentions = outputs.filter((o) => JSON.stringify(o.out).includes(vars.TOKEN!)).map((o) => o.method);
    expect(mentions).toEqual(["CreateToken"]);
  });
});

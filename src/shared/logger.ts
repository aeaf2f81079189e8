/**
 * Structured JSON logs (pino). Token secrets never reach a log line: request and response
 * messages are never logged, and as a second line of defence every string that looks like a
 * credential (`pw_mgmt_…`, `pw_test_…`, `pw_live_…`) is masked before it is written.
 */
import pino, { type DestinationStream, type Logger } from "pino";

const CREDENTIAL = /\b(pw_(?:mgmt|test|live)_)[A-Za-z0-9]{4,}/g;

export function redactSecrets(value: string): string {
  return value.replace(CREDENTIAL, "$1[REDACTED]");
}

function scrub(value: unknown, depth: number): unknown {
  if (typeof value === "string") return redactSecrets(value);
  if (depth > 6 || value === null || typeof value !== "object") return value;
  if (value instanceof Error) return { type: value.name, message: redactSecrets(value.message), stack: value.stack ? redactSecrets(value.stack) : undefined };
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = /secret|^token$|password/i.test(k) ? "[REDACTED]" : scrub(v, depth + 1);
  return out;
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "pokerworks-identity" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { log: (obj) => scrub(obj, 0) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          const scrubbed = args.map((a) => (typeof a === "string" ? redactSecrets(a) : a)) as typeof args;
          return method.apply(this, scrubbed);
        },
      },
    },
    destination,
  );
}

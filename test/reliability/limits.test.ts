/**
 * The connection and message limits are configuration (documented in RELIABILITY.md): their
 * defaults, their validation, and the byte budget that keeps every error status small.
 */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config";
import { STATUS_DETAILS_KEY, toServiceError, truncateUtf8 } from "../../src/grpc/error-boundary";
import { InvalidArgumentError } from "../../src/shared/errors";
import { decodeStatus } from "../support/harness";

describe("limits", () => {
  it("defaults: 1 MiB messages, 1000 streams per connection, keepalive ping after 60 s (20 s to answer), idle connections closed after 5 min", () => {
    const c = loadConfig({});
    expect({
      maxReceiveMessageBytes: c.maxReceiveMessageBytes,
      maxConcurrentStreams: c.maxConcurrentStreams,
      keepaliveTimeMs: c.keepaliveTimeMs,
      keepaliveTimeoutMs: c.keepaliveTimeoutMs,
      maxConnectionIdleMs: c.maxConnectionIdleMs,
    }).toEqual({ maxReceiveMessageBytes: 1_048_576, maxConcurrentStreams: 1000, keepaliveTimeMs: 60_000, keepaliveTimeoutMs: 20_000, maxConnectionIdleMs: 300_000 });
  });

  it("each limit is read from its GRPC_* variable and a bad value names the variable", () => {
    const c = loadConfig({ GRPC_KEEPALIVE_TIME_MS: "1000", GRPC_KEEPALIVE_TIMEOUT_MS: "500", GRPC_MAX_CONNECTION_IDLE_MS: "3000" });
    expect([c.keepaliveTimeMs, c.keepaliveTimeoutMs, c.maxConnectionIdleMs]).toEqual([1000, 500, 3000]);
    for (const name of ["GRPC_KEEPALIVE_TIME_MS", "GRPC_KEEPALIVE_TIMEOUT_MS", "GRPC_MAX_CONNECTION_IDLE_MS", "GRPC_MAX_CONCURRENT_STREAMS", "GRPC_MAX_RECEIVE_MESSAGE_BYTES"]) {
      for (const bad of ["-1", "abc", "0", "99999999999"]) {
        let err: unknown;
        try {
          loadConfig({ [name]: bad });
        } catch (e) {
          err = e;
        }
        expect(err, `${name}=${bad}`).toBeInstanceOf(ConfigError);
        expect((err as ConfigError).variable).toBe(name);
      }
    }
  });

  it("error texts are cut to a byte budget on a character boundary", () => {
    expect(truncateUtf8("short", 10)).toBe("short");
    const cut = truncateUtf8("é".repeat(300), 200);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(200);
    expect(cut.endsWith("…")).toBe(true);
    expect(cut.slice(0, -1)).toBe("é".repeat(cut.length - 1));
    expect(Buffer.byteLength(truncateUtf8("𝕏".repeat(100), 50))).toBeLessThanOrEqual(50);
  });

  it("an error status stays small whatever the request held, and never echoes a credential", () => {
    const secret = `pw_mgmt_${"A1b2C3d4".repeat(4)}000000`;
    const violations = Array.from({ length: 1000 }, (_, i) => ({ field: `scopes[${i}]`, description: `'${secret}${"é".repeat(400)}' is not a scope` }));
    const log = { error: () => undefined };
    const e = toServiceError(new InvalidArgumentError(violations), log, "CreateToken");
    const details = e.metadata.get(STATUS_DETAILS_KEY)[0] as Buffer;
    expect(Buffer.byteLength(encodeURI(e.details)) + Math.ceil((details.length * 4) / 3)).toBeLessThan(8 * 1024);
    const d = decodeStatus(e.metadata);
    expect(d.fieldViolations.length).toBe(10);
    expect(e.details).toMatch(/; and 990 more$/);
    expect(JSON.stringify(d.fieldViolations) + e.details).not.toContain(secret.slice(8));
  });
});

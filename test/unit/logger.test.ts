import { describe, expect, it } from "vitest";
import { createLogger, redactSecrets } from "../../src/shared/logger";
import { generateToken } from "../../src/tokens/token-format";
import { LogCapture } from "../support/harness";

describe("log redaction", () => {
  it("masks anything that looks like a credential, in messages, fields, nested objects and errors", () => {
    const token = generateToken();
    const capture = new LogCapture();
    const log = createLogger("info", capture);
    log.info(`message with ${token} inside`);
    log.info({ nested: { list: [`x ${token}`], token, secret: "s3cr3t", password: "hunter2" } }, "fields");
    log.error({ err: new Error(`failed for ${token}`) }, "error");
    log.info({ key: "pw_live_abcdefghijklmnop" }, "product key");
    expect(capture.lines).toHaveLength(4);
    expect(capture.text).not.toContain(token);
    expect(capture.text).not.toContain(token.slice(8));
    expect(capture.text).not.toContain("s3cr3t");
    expect(capture.text).not.toContain("hunter2");
    expect(capture.text).not.toContain("abcdefghijklmnop");
    expect(capture.text).toContain("pw_mgmt_[REDACTED]");
    expect(capture.text).toContain("pw_live_[REDACTED]");
  });

  it("leaves ordinary text alone", () => {
    expect(redactSecrets("token tok_123 of sa_456 was revoked")).toBe("token tok_123 of sa_456 was revoked");
  });
});

/**
 * The one error boundary: maps the closed set of domain errors to gRPC statuses with
 * AIP-193 details (one google.rpc.ErrorInfo, plus google.rpc.BadRequest for invalid input)
 * in the `grpc-status-details-bin` trailer. Anything else is UNKNOWN with a generic
 * message; its stack is logged, never sent.
 */
import { Metadata, status as Code, type ServiceError } from "@grpc/grpc-js";
import { BadRequest, ErrorInfo } from "../generated/google/rpc/error_details";
import { Status } from "../generated/google/rpc/status";
import { ErrorReason, errorReasonToJSON } from "../generated/pokerworks/identity/v1/error_reason";
import {
  AlreadyExistsError,
  DomainError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnavailableError,
} from "../shared/errors";
import { isDependencyUnavailable } from "../shared/infra-errors";
import { redactSecrets } from "../shared/logger";

export const ERROR_DOMAIN = "identity.pokerworks.com";
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";

function codeOf(err: DomainError): Code {
  if (err instanceof InvalidArgumentError) return Code.INVALID_ARGUMENT;
  if (err instanceof NotFoundError) return Code.NOT_FOUND;
  if (err instanceof AlreadyExistsError) return Code.ALREADY_EXISTS;
  if (err instanceof PermissionDeniedError) return Code.PERMISSION_DENIED;
  if (err instanceof FailedPreconditionError) return Code.FAILED_PRECONDITION;
  if (err instanceof ResourceExhaustedError) return Code.RESOURCE_EXHAUSTED;
  if (err instanceof UnavailableError) return Code.UNAVAILABLE;
  return Code.UNKNOWN;
}

export function statusError(code: Code, message: string, reason: ErrorReason, extra?: { metadata?: Record<string, string>; badRequest?: BadRequest }): ServiceError {
  const details = [
    {
      typeUrl: "type.googleapis.com/google.rpc.ErrorInfo",
      value: Buffer.from(ErrorInfo.encode({ reason: errorReasonToJSON(reason), domain: ERROR_DOMAIN, metadata: extra?.metadata ?? {} }).finish()),
    },
  ];
  if (extra?.badRequest) {
    details.push({ typeUrl: "type.googleapis.com/google.rpc.BadRequest", value: Buffer.from(BadRequest.encode(extra.badRequest).finish()) });
  }
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_KEY, Buffer.from(Status.encode({ code, message, details }).finish()));
  return Object.assign(new Error(message), { code, details: message, metadata });
}

/**
 * Status details travel in HTTP/2 trailers, and a client drops (grpc-js: hangs on) a header
 * block beyond its limit (64 KiB in grpc-js, 8 KiB in some other stacks). Whatever a request
 * holds, the status stays small: at most MAX_VIOLATIONS field violations, each description and
 * the message cut to a byte budget.
 */
const MAX_VIOLATIONS = 10;
const MAX_DESCRIPTION_BYTES = 200;
const MAX_MESSAGE_BYTES = 512;

/** `text` cut to at most `maxBytes` of UTF-8, on a character boundary, with an ellipsis when cut. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, "utf8") <= maxBytes) return text;
  let out = "";
  let bytes = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch, "utf8");
    if (bytes + n > maxBytes - 3) break;
    out += ch;
    bytes += n;
  }
  return `${out}…`;
}

function boundedViolations(err: InvalidArgumentError): { violations: { field: string; description: string }[]; message: string } {
  const violations = err.violations
    .slice(0, MAX_VIOLATIONS)
    .map((v) => ({ field: truncateUtf8(v.field, 100), description: truncateUtf8(redactSecrets(v.description), MAX_DESCRIPTION_BYTES) }));
  const more = err.violations.length - violations.length;
  const suffix = more > 0 ? `; and ${more} more` : "";
  const message = truncateUtf8(violations.map((v) => `${v.field}: ${v.description}`).join("; "), MAX_MESSAGE_BYTES - suffix.length) + suffix;
  return { violations, message };
}

export interface BoundaryLogger {
  error(obj: object, msg: string): void;
}

/** Turns anything a handler threw into the status the client receives. */
export function toServiceError(err: unknown, log: BoundaryLogger, method: string): ServiceError {
  if (err instanceof DomainError) {
    if (err instanceof InvalidArgumentError) {
      const { violations, message } = boundedViolations(err);
      const badRequest = { fieldViolations: violations.map((v) => ({ field: v.field, description: v.description, reason: "", localizedMessage: undefined })) };
      return statusError(codeOf(err), message, err.reason, { metadata: err.metadata, badRequest });
    }
    return statusError(codeOf(err), truncateUtf8(redactSecrets(err.message), MAX_MESSAGE_BYTES), err.reason, { metadata: err.metadata });
  }
  if (isDependencyUnavailable(err)) {
    log.error({ err, method }, "dependency unavailable");
    return statusError(Code.UNAVAILABLE, "A dependency of the identity service is unavailable; retry with backoff", ErrorReason.ERROR_REASON_DEPENDENCY_UNAVAILABLE);
  }
  log.error({ err, method }, "unexpected error");
  return statusError(Code.UNKNOWN, "Unexpected error in the identity service; it has been logged", ErrorReason.ERROR_REASON_UNEXPECTED);
}

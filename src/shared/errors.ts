/**
 * The closed set of domain errors. Features throw these; the gRPC error boundary
 * (src/grpc/error-boundary.ts) is the only place that turns them into statuses.
 * Anything else that escapes a handler is UNKNOWN with a generic message.
 */
import { ErrorReason } from "../generated/pokerworks/identity/v1/error_reason";

export interface FieldViolation {
  /** The request field, in proto (snake_case) path form, e.g. `scopes[2]`. */
  field: string;
  description: string;
}

export abstract class DomainError extends Error {
  abstract readonly reason: ErrorReason;
  /** Extra ErrorInfo metadata (never secrets). */
  readonly metadata: Record<string, string>;
  constructor(message: string, metadata: Record<string, string> = {}) {
    super(message);
    this.name = new.target.name;
    this.metadata = metadata;
  }
}

/** INVALID_ARGUMENT with BadRequest field violations. */
export class InvalidArgumentError extends DomainError {
  readonly reason: ErrorReason;
  readonly violations: FieldViolation[];
  constructor(violations: FieldViolation[], reason: ErrorReason = ErrorReason.ERROR_REASON_INVALID_FIELD) {
    super(violations.map((v) => `${v.field}: ${v.description}`).join("; "));
    this.violations = violations;
    this.reason = reason;
  }
}

export class NotFoundError extends DomainError {
  constructor(
    readonly reason: ErrorReason,
    message: string,
  ) {
    super(message);
  }
}

export class AlreadyExistsError extends DomainError {
  constructor(
    readonly reason: ErrorReason,
    message: string,
  ) {
    super(message);
  }
}

export class PermissionDeniedError extends DomainError {
  constructor(
    readonly reason: ErrorReason,
    message: string,
  ) {
    super(message);
  }
}

export class FailedPreconditionError extends DomainError {
  constructor(
    readonly reason: ErrorReason,
    message: string,
  ) {
    super(message);
  }
}

export class ResourceExhaustedError extends DomainError {
  constructor(
    readonly reason: ErrorReason,
    message: string,
  ) {
    super(message);
  }
}

/** A dependency (PostgreSQL, Redis) can't be reached; the caller should retry. */
export class UnavailableError extends DomainError {
  constructor(
    message: string,
    readonly reason: ErrorReason = ErrorReason.ERROR_REASON_DEPENDENCY_UNAVAILABLE,
  ) {
    super(message);
  }
}

/** Collects violations so a request reports every bad field at once. */
export class Violations {
  readonly list: FieldViolation[] = [];
  add(field: string, description: string): void {
    this.list.push({ field, description });
  }
  throwIfAny(): void {
    if (this.list.length > 0) throw new InvalidArgumentError(this.list);
  }
}

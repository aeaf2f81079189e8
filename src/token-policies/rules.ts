/** The organization token policy: validation and enforcement. Pure: no I/O. */
import type { Duration } from "../generated/google/protobuf/duration";
import { ErrorReason } from "../generated/pokerworks/identity/v1/error_reason";
import { FailedPreconditionError, type Violations } from "../shared/errors";

export const MIN_LIFETIME_SECONDS = 60;
export const MAX_LIFETIME_SECONDS = 3650 * 24 * 3600;

export interface TokenPolicyRule {
  /** Null: no maximum. */
  maxTokenLifetimeSeconds: number | null;
  requireExpiry: boolean;
}

export const DEFAULT_POLICY: TokenPolicyRule = { maxTokenLifetimeSeconds: null, requireExpiry: false };

/** A google.protobuf.Duration as whole seconds, or undefined after adding a violation. */
export function durationSeconds(v: Violations, field: string, d: Duration, min: number, max: number): number | undefined {
  const seconds = d.seconds + d.nanos / 1e9;
  if (!Number.isFinite(seconds) || d.nanos <= -1e9 || d.nanos >= 1e9 || (d.seconds > 0 && d.nanos < 0) || (d.seconds < 0 && d.nanos > 0)) {
    v.add(field, `${field} is not a valid duration`);
    return undefined;
  }
  if (seconds < min || seconds > max) {
    v.add(field, `${field} must be between ${min} and ${max} seconds (got ${seconds})`);
    return undefined;
  }
  return seconds;
}

const policyError = (field: string, message: string) => {
  const err = new FailedPreconditionError(ErrorReason.ERROR_REASON_TOKEN_POLICY_VIOLATION, message);
  err.metadata.policy_field = field;
  return err;
};

/** Throws FAILED_PRECONDITION naming the policy when a token with this expiry would break it. */
export function enforceTokenPolicy(policy: TokenPolicyRule, expireTime: Date | null, now: Date): void {
  if (policy.requireExpiry && expireTime === null)
    throw policyError("require_expiry", "The organization's token policy (require_expiry) requires every new token to have an expire_time");
  if (policy.maxTokenLifetimeSeconds !== null) {
    if (expireTime === null)
      throw policyError(
        "max_token_lifetime",
        `The organization's token policy (max_token_lifetime ${policy.maxTokenLifetimeSeconds}s) requires an expire_time at most that far ahead`,
      );
    const lifetime = (expireTime.getTime() - now.getTime()) / 1000;
    if (lifetime > policy.maxTokenLifetimeSeconds)
      throw policyError(
        "max_token_lifetime",
        `The organization's token policy (max_token_lifetime ${policy.maxTokenLifetimeSeconds}s) allows an expire_time at most ${new Date(now.getTime() + policy.maxTokenLifetimeSeconds * 1000).toISOString()}`,
      );
  }
}

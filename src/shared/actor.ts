/** The Actor of a mutation: validation (people only) and its stored form. Pure. */
import type { Actor } from "../generated/pokerworks/identity/v1/actor";
import { ErrorReason } from "../generated/pokerworks/identity/v1/error_reason";
import { PermissionDeniedError, Violations } from "./errors";
import { hasControlChars } from "./validation";

export type ActorKind = "user" | "management_token" | "system";
export interface ActorRecord {
  kind: ActorKind;
  id: string;
}

const MAX_ACTOR_ID = 128;

/**
 * Every issuance RPC requires a person: a missing actor is INVALID_ARGUMENT, a management
 * token is PERMISSION_DENIED (no privilege escalation). Returns undefined after adding a
 * violation.
 */
export function requireHumanActor(v: Violations, actor: Actor | undefined): ActorRecord | undefined {
  const kind = actor?.kind;
  if (kind === undefined) {
    v.add("actor", "actor is required: set actor.user_id to the console user making the change");
    return undefined;
  }
  if (kind.$case === "system") {
    v.add("actor.system", "actor.system is set by the service itself; a request's actor must be a user (actor.user_id)");
    return undefined;
  }
  if (kind.$case === "managementToken") {
    throw new PermissionDeniedError(
      ErrorReason.ERROR_REASON_MANAGEMENT_TOKEN_NOT_ALLOWED,
      "A management token can't mint management tokens or manage service accounts; only a person signed in to the console can",
    );
  }
  const id = kind.value;
  if (id.trim() === "") v.add("actor.user_id", "actor.user_id is required");
  else if (id.length > MAX_ACTOR_ID || hasControlChars(id))
    v.add("actor.user_id", `actor.user_id must be at most ${MAX_ACTOR_ID} printable characters`);
  return { kind: "user", id };
}

export function actorToProto(kind: string, id: string): Actor {
  if (kind === "management_token") return { kind: { $case: "managementToken", value: id } };
  if (kind === "system") return { kind: { $case: "system", value: id } };
  return { kind: { $case: "userId", value: id } };
}

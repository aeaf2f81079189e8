/**
 * Token lifecycle beyond create and revoke: rotation with overlap, leak reports from
 * secret-scanning partners, and incident revocation of everything issued before a time.
 */
import { LockMode } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import type { Logger } from "pino";
import { ErrorReason } from "../generated/pokerworks/identity/v1/error_reason";
import {
  type LeakedTokenResult,
  LeakOutcome,
  type ReportLeakedTokensRequest,
  type ReportLeakedTokensResponse,
  type RevokeTokensIssuedBeforeRequest,
  type RevokeTokensIssuedBeforeResponse,
  type RotateTokenRequest,
  type RotateTokenResponse,
} from "../generated/pokerworks/identity/v1/token_service";
import { recordAuditEvent } from "../audit/recorder";
import type { RevocationPublisher } from "../authorization/revocation-publisher";
import { serviceAccountNotFound } from "../service-accounts/errors";
import { findServiceAccount } from "../service-accounts/store";
import { type ActorRecord, requireHumanActor } from "../shared/actor";
import { FailedPreconditionError, NotFoundError, Violations } from "../shared/errors";
import { checkOrganizationId, checkServerId, checkText, hasControlChars } from "../shared/validation";
import { durationSeconds } from "../token-policies/rules";
import { TokenEntity } from "./entity";
import { toTokenProto } from "./mapper";
import { mintToken, tokenAuditDetails } from "./mint";
import { MAX_TIMESTAMP } from "./rules";
import { findToken } from "./store";
import { hashToken, isWellFormedToken } from "./token-format";

export const DEFAULT_OVERLAP_SECONDS = 24 * 3600;
export const MAX_OVERLAP_SECONDS = 30 * 24 * 3600;
export const MAX_LEAK_REPORT = 100;
const MAX_ISSUED_BEFORE_AHEAD_MS = 5 * 60 * 1000;

export const tokenNotFound = () => new NotFoundError(ErrorReason.ERROR_REASON_TOKEN_NOT_FOUND, "Token not found in this organization");

const notRotatable = (message: string) => new FailedPreconditionError(ErrorReason.ERROR_REASON_TOKEN_NOT_ROTATABLE, message);

function checkFutureTimestamp(v: Violations, field: string, t: Date | undefined, now: Date): void {
  if (t === undefined) return;
  if (Number.isNaN(t.getTime()) || t > MAX_TIMESTAMP) v.add(field, `${field} must be a valid timestamp no later than 9999-12-31T23:59:59Z`);
  else if (t <= now) v.add(field, `${field} must be in the future`);
}

export async function rotateToken(em: EntityManager, revocations: RevocationPublisher, req: RotateTokenRequest, at: Date): Promise<RotateTokenResponse> {
  const v = new Violations();
  const actor = requireHumanActor(v, req.actor);
  checkOrganizationId(v, req.organizationId);
  checkServerId(v, "token_id", req.tokenId);
  const overlap = req.overlap ? durationSeconds(v, "overlap", req.overlap, 0, MAX_OVERLAP_SECONDS) : DEFAULT_OVERLAP_SECONDS;
  checkFutureTimestamp(v, "expire_time", req.expireTime, at);
  v.throwIfAny();

  const { previous, minted } = await em.transactional(async (tx) => {
    const previous = await findToken(tx, req.organizationId, req.tokenId, true);
    if (!previous) throw tokenNotFound();
    if (previous.status === "revoked") throw notRotatable("The token is revoked; create a new token instead");
    if (previous.expireTime !== null && previous.expireTime <= at) throw notRotatable("The token has expired; create a new token instead");
    if (previous.supersededByTokenId) throw notRotatable(`The token was already rotated; it is superseded by ${previous.supersededByTokenId}`);
    const lifetimeMs = previous.expireTime ? previous.expireTime.getTime() - previous.createTime.getTime() : null;
    const expireTime = req.expireTime ?? (lifetimeMs === null ? null : new Date(at.getTime() + lifetimeMs));
    const minted = await mintToken(tx, {
      organizationId: previous.organizationId,
      serviceAccountId: previous.serviceAccountId,
      grant: { label: previous.label, scopes: previous.scopes, projectIds: previous.projectIds, environments: previous.environments, expireTime },
      actor: actor!,
      now: () => at,
      replacesTokenId: previous.id,
    });
    const previousExpireTime = previous.expireTime;
    previous.supersededByTokenId = minted.token.id;
    if (overlap === 0) {
      previous.status = "revoked";
      previous.revokeTime = at;
    } else {
      const end = new Date(at.getTime() + Math.round(overlap! * 1000));
      if (previous.expireTime === null || end < previous.expireTime) previous.expireTime = end;
    }
    recordAuditEvent(tx, {
      organizationId: previous.organizationId,
      projectIds: previous.projectIds,
      action: "token.rotated",
      actor: actor!,
      targetType: "token",
      targetId: previous.id,
      occurTime: at,
      details: {
        new_token_id: minted.token.id,
        new_token: tokenAuditDetails(minted.token),
        overlap_seconds: overlap,
        previous_expire_time_before: previousExpireTime?.toISOString() ?? null,
        previous_expire_time_after: previous.expireTime?.toISOString() ?? null,
        previous_revoked: overlap === 0,
      },
    });
    return { previous, minted };
  });
  if (previous.status === "revoked") await revocations.publish({ tokenIds: [previous.id], serviceAccountIds: [] });
  else
    // The old token stays valid through the overlap, so this only speeds up what cache expiry
    // would do anyway: a failure must not cost the caller the new secret.
    await revocations.publish({ tokenIds: [], serviceAccountIds: [], changedTokenIds: [previous.id] }).catch(() => undefined);
  return { token: toTokenProto(minted.token, at), secret: minted.secret, previousToken: toTokenProto(previous, at) };
}

/** First 12 and last 4 characters; short strings are not echoed at all. */
function maskReported(s: string): string {
  return s.length >= 20 ? `${s.slice(0, 12)}...${s.slice(-4)}` : `(${s.length} characters)`;
}

export async function reportLeakedTokens(
  em: EntityManager,
  revocations: RevocationPublisher,
  log: Logger,
  req: ReportLeakedTokensRequest,
  at: Date,
): Promise<ReportLeakedTokensResponse> {
  const v = new Violations();
  if (req.tokens.length === 0) v.add("tokens", "tokens is required: give 1 to 100 strings");
  else if (req.tokens.length > MAX_LEAK_REPORT) v.add("tokens", `at most ${MAX_LEAK_REPORT} strings per report`);
  const source = checkText(v, "source", req.source, 1, 100);
  if (req.url !== "") {
    let ok = false;
    try {
      ok = req.url.length <= 2048 && !hasControlChars(req.url) && ["http:", "https:"].includes(new URL(req.url).protocol);
    } catch {
      ok = false;
    }
    if (!ok) v.add("url", "url must be an http or https URL of at most 2048 characters");
  }
  v.throwIfAny();

  const actor: ActorRecord = { kind: "system", id: `secret_scanning:${source}` };
  const results: LeakedTokenResult[] = req.tokens.map((s) => ({
    masked: maskReported(s),
    wellFormed: isWellFormedToken(s),
    outcome: LeakOutcome.LEAK_OUTCOME_NOT_A_TOKEN,
  }));
  const byHash = new Map<string, number[]>();
  req.tokens.forEach((s, i) => {
    if (!results[i]!.wellFormed) return;
    results[i]!.outcome = LeakOutcome.LEAK_OUTCOME_UNKNOWN_TOKEN;
    const key = hashToken(s).toString("hex");
    byHash.set(key, [...(byHash.get(key) ?? []), i]);
  });
  if (byHash.size === 0) return { results };

  const revoked = await em.transactional(async (tx) => {
    const hashes = [...byHash.keys()].map((h) => Buffer.from(h, "hex"));
    const tokens = await tx.find(TokenEntity, { secretHash: { $in: hashes } }, { populate: ["secretHash"], lockMode: LockMode.PESSIMISTIC_WRITE });
    const revoked: TokenEntity[] = [];
    for (const token of tokens) {
      const active = token.status === "active" && (token.expireTime === null || token.expireTime > at);
      for (const i of byHash.get(token.secretHash.toString("hex")) ?? []) results[i]!.outcome = active ? LeakOutcome.LEAK_OUTCOME_REVOKED : LeakOutcome.LEAK_OUTCOME_ALREADY_INACTIVE;
      if (!active) continue;
      token.status = "revoked";
      token.revokeTime = at;
      revoked.push(token);
      recordAuditEvent(tx, {
        organizationId: token.organizationId,
        projectIds: token.projectIds,
        action: "token.leaked",
        actor,
        targetType: "token",
        targetId: token.id,
        occurTime: at,
        details: { source, url: req.url || null, service_account_id: token.serviceAccountId, label: token.label, prefix: token.prefix },
      });
    }
    return revoked;
  });
  // Strings reported twice in one request: the second sighting already finds it revoked.
  for (const [, indexes] of byHash) for (const i of indexes.slice(1)) if (results[i]!.outcome === LeakOutcome.LEAK_OUTCOME_REVOKED) results[i]!.outcome = LeakOutcome.LEAK_OUTCOME_ALREADY_INACTIVE;
  if (revoked.length > 0) {
    await revocations.publish({ tokenIds: revoked.map((t) => t.id), serviceAccountIds: [] });
    log.warn({ source, token_ids: revoked.map((t) => t.id) }, "leaked tokens revoked");
  }
  return { results };
}

export async function revokeTokensIssuedBefore(
  em: EntityManager,
  revocations: RevocationPublisher,
  req: RevokeTokensIssuedBeforeRequest,
  at: Date,
): Promise<RevokeTokensIssuedBeforeResponse> {
  const v = new Violations();
  const actor = requireHumanActor(v, req.actor);
  checkOrganizationId(v, req.organizationId);
  if (req.serviceAccountId !== "") checkServerId(v, "service_account_id", req.serviceAccountId);
  const before = req.issuedBefore;
  if (before === undefined) v.add("issued_before", "issued_before is required");
  else if (Number.isNaN(before.getTime()) || before.getTime() > at.getTime() + MAX_ISSUED_BEFORE_AHEAD_MS)
    v.add("issued_before", "issued_before must be a valid timestamp at most 5 minutes in the future");
  v.throwIfAny();

  const revoked = await em.transactional(async (tx) => {
    if (req.serviceAccountId !== "" && !(await findServiceAccount(tx, req.organizationId, req.serviceAccountId))) throw serviceAccountNotFound();
    const rows = await tx.execute<{ id: string; service_account_id: string; project_ids: string[]; label: string; prefix: string }[]>(
      `update tokens set status = 'revoked', revoke_time = ?
        where organization_id = ? ${req.serviceAccountId !== "" ? "and service_account_id = ?" : ""}
          and status = 'active' and (expire_time is null or expire_time > ?) and create_time < ?
        returning id, service_account_id, project_ids, label, prefix`,
      req.serviceAccountId !== "" ? [at, req.organizationId, req.serviceAccountId, at, before!] : [at, req.organizationId, at, before!],
    );
    for (const row of rows)
      recordAuditEvent(tx, {
        organizationId: req.organizationId,
        projectIds: row.project_ids,
        action: "token.revoked",
        actor: actor!,
        targetType: "token",
        targetId: row.id,
        occurTime: at,
        details: { service_account_id: row.service_account_id, label: row.label, prefix: row.prefix, reason: "revoke_tokens_issued_before", issued_before: before!.toISOString() },
      });
    return rows.map((r) => r.id);
  });
  await revocations.publish({ tokenIds: revoked, serviceAccountIds: [] });
  return { revokedTokenCount: revoked.length, revokedTokenIds: revoked };
}

/** OrganizationPolicyService: the organization's token policy. */
import { LockMode } from "@mikro-orm/core";
import type {
  GetTokenPolicyRequest,
  GetTokenPolicyResponse,
  OrganizationPolicyServiceServer,
  UpdateTokenPolicyRequest,
  UpdateTokenPolicyResponse,
} from "../generated/pokerworks/identity/v1/organization_policy_service";
import { recordAuditEvent } from "../audit/recorder";
import { unary, type UnaryDeps } from "../grpc/unary";
import { requireHumanActor } from "../shared/actor";
import { Violations } from "../shared/errors";
import { checkOrganizationId } from "../shared/validation";
import { TokenPolicyEntity } from "./entity";
import { toTokenPolicyProto } from "./mapper";
import { durationSeconds, MAX_LIFETIME_SECONDS, MIN_LIFETIME_SECONDS } from "./rules";
import { findTokenPolicy } from "./store";

export function tokenPolicyHandlers(deps: UnaryDeps & { now?: () => Date }): OrganizationPolicyServiceServer {
  const now = deps.now ?? (() => new Date());
  return {
    getTokenPolicy: unary(deps, "GetTokenPolicy", async (req: GetTokenPolicyRequest, { em }): Promise<GetTokenPolicyResponse> => {
      const v = new Violations();
      checkOrganizationId(v, req.organizationId);
      v.throwIfAny();
      return { policy: toTokenPolicyProto(req.organizationId, await findTokenPolicy(em, req.organizationId)) };
    }),

    updateTokenPolicy: unary(deps, "UpdateTokenPolicy", async (req: UpdateTokenPolicyRequest, { em }): Promise<UpdateTokenPolicyResponse> => {
      const v = new Violations();
      const actor = requireHumanActor(v, req.actor);
      checkOrganizationId(v, req.organizationId);
      const max = req.maxTokenLifetime ? durationSeconds(v, "max_token_lifetime", req.maxTokenLifetime, MIN_LIFETIME_SECONDS, MAX_LIFETIME_SECONDS) : null;
      v.throwIfAny();
      const at = now();
      const policy = await em.transactional(async (tx) => {
        // Upsert under a row lock, so concurrent updates serialise and each gets its audit event.
        await tx.execute(`insert into token_policies (organization_id, max_token_lifetime_seconds, require_expiry, update_time, updated_by_kind, updated_by_id)
                          values (?, null, false, ?, ?, ?) on conflict (organization_id) do nothing`, [req.organizationId, at, actor!.kind, actor!.id]);
        const policy = await tx.findOneOrFail(TokenPolicyEntity, { organizationId: req.organizationId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
        const before = { max_token_lifetime_seconds: policy.maxTokenLifetimeSeconds === null ? null : Number(policy.maxTokenLifetimeSeconds), require_expiry: policy.requireExpiry };
        policy.maxTokenLifetimeSeconds = max === null || max === undefined ? null : String(Math.floor(max));
        policy.requireExpiry = req.requireExpiry;
        policy.updateTime = at;
        policy.updatedByKind = actor!.kind;
        policy.updatedById = actor!.id;
        recordAuditEvent(tx, {
          organizationId: req.organizationId,
          action: "token_policy.updated",
          actor: actor!,
          targetType: "organization",
          targetId: req.organizationId,
          occurTime: at,
          details: { before, after: { max_token_lifetime_seconds: max === undefined ? null : max && Math.floor(max), require_expiry: req.requireExpiry } },
        });
        return policy;
      });
      return { policy: toTokenPolicyProto(req.organizationId, policy) };
    }),
  };
}

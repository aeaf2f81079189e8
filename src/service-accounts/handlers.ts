/** ServiceAccountService: the use cases behind each RPC, wired to grpc-js through `unary`. */
import { UniqueConstraintViolationException } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { ErrorReason } from "../generated/pokerworks/identity/v1/error_reason";
import type {
  CreateServiceAccountRequest,
  CreateServiceAccountResponse,
  GetServiceAccountRequest,
  GetServiceAccountResponse,
  ListServiceAccountsRequest,
  ListServiceAccountsResponse,
  RevokeServiceAccountRequest,
  RevokeServiceAccountResponse,
  ServiceAccountServiceServer,
  UpdateServiceAccountRequest,
  UpdateServiceAccountResponse,
} from "../generated/pokerworks/identity/v1/service_account_service";
import { recordAuditEvent } from "../audit/recorder";
import type { RevocationPublisher } from "../authorization/revocation-publisher";
import { unary, type UnaryDeps } from "../grpc/unary";
import { requireHumanActor } from "../shared/actor";
import { AlreadyExistsError, FailedPreconditionError, Violations } from "../shared/errors";
import { newId } from "../shared/ids";
import { checkPageSize, decodePageToken, encodePageToken } from "../shared/page-token";
import { checkOrganizationId, checkServerId } from "../shared/validation";
import { countActiveTokens, revokeActiveTokensOf } from "../tokens/store";
import { ServiceAccountEntity } from "./entity";
import { serviceAccountNotFound } from "./errors";
import { toServiceAccountProto } from "./mapper";
import { checkDescription, checkName, resolveUpdateMask } from "./rules";
import { findActiveByName, findServiceAccount, listServiceAccounts } from "./store";

export interface ServiceAccountDeps extends UnaryDeps {
  revocations: RevocationPublisher;
  now?: () => Date;
}

const nameTaken = (name: string) =>
  new AlreadyExistsError(ErrorReason.ERROR_REASON_SERVICE_ACCOUNT_NAME_TAKEN, `An active service account named '${name}' already exists in this organization`);


async function toProto(em: EntityManager, sa: ServiceAccountEntity, now: Date) {
  const counts = await countActiveTokens(em, [sa.id], now);
  return toServiceAccountProto(sa, counts.get(sa.id) ?? 0);
}

function isActiveNameViolation(err: unknown): boolean {
  return err instanceof UniqueConstraintViolationException && /service_accounts_active_name/.test(String((err as Error).message));
}

export function serviceAccountHandlers(deps: ServiceAccountDeps): ServiceAccountServiceServer {
  const now = deps.now ?? (() => new Date());

  function newServiceAccount(req: CreateServiceAccountRequest): ServiceAccountEntity {
    const v = new Violations();
    const actor = requireHumanActor(v, req.actor);
    checkOrganizationId(v, req.organizationId);
    const name = checkName(v, req.name);
    const description = checkDescription(v, req.description);
    v.throwIfAny();
    const at = now();
    return Object.assign(new ServiceAccountEntity(), {
      id: newId("sa"),
      organizationId: req.organizationId,
      name,
      description,
      status: "active" as const,
      createdByKind: actor!.kind,
      createdById: actor!.id,
      createTime: at,
      updateTime: at,
    });
  }

  return {
    createServiceAccount: unary(deps, "CreateServiceAccount", async (req: CreateServiceAccountRequest, { em, log }): Promise<CreateServiceAccountResponse> => {
      const sa = newServiceAccount(req);
      try {
        await em.transactional(async (tx) => {
          if (await findActiveByName(tx, sa.organizationId, sa.name)) throw nameTaken(sa.name);
          tx.persist(sa);
          recordAuditEvent(tx, {
            organizationId: sa.organizationId,
            action: "service_account.created",
            actor: { kind: "user", id: sa.createdById },
            targetType: "service_account",
            targetId: sa.id,
            occurTime: sa.createTime,
            details: { name: sa.name, description: sa.description },
          });
        });
      } catch (err) {
        if (isActiveNameViolation(err)) throw nameTaken(sa.name);
        throw err;
      }
      log.info({ organization_id: sa.organizationId, service_account_id: sa.id }, "service account created");
      return { serviceAccount: toServiceAccountProto(sa, 0) };
    }),

    getServiceAccount: unary(deps, "GetServiceAccount", async (req: GetServiceAccountRequest, { em }): Promise<GetServiceAccountResponse> => {
      const v = new Violations();
      checkOrganizationId(v, req.organizationId);
      checkServerId(v, "service_account_id", req.serviceAccountId);
      v.throwIfAny();
      const sa = await findServiceAccount(em, req.organizationId, req.serviceAccountId);
      if (!sa) throw serviceAccountNotFound();
      return { serviceAccount: await toProto(em, sa, now()) };
    }),

    listServiceAccounts: unary(deps, "ListServiceAccounts", async (req: ListServiceAccountsRequest, { em }): Promise<ListServiceAccountsResponse> => {
      const v = new Violations();
      checkOrganizationId(v, req.organizationId);
      const pageSize = checkPageSize(v, req.pageSize);
      v.throwIfAny();
      const binding = `service_accounts|${req.organizationId}|${req.includeRevoked}`;
      const afterSeq = decodePageToken(req.pageToken, binding);
      const rows = await listServiceAccounts(em, { organizationId: req.organizationId, includeRevoked: req.includeRevoked, afterSeq, limit: pageSize + 1 });
      const page = rows.slice(0, pageSize);
      const counts = await countActiveTokens(em, page.map((sa) => sa.id), now());
      return {
        serviceAccounts: page.map((sa) => toServiceAccountProto(sa, counts.get(sa.id) ?? 0)),
        nextPageToken: rows.length > pageSize ? encodePageToken(page[page.length - 1]!.seq, binding) : "",
      };
    }),

    updateServiceAccount: unary(deps, "UpdateServiceAccount", async (req: UpdateServiceAccountRequest, { em }): Promise<UpdateServiceAccountResponse> => {
      const v = new Violations();
      const actor = requireHumanActor(v, req.actor);
      checkOrganizationId(v, req.organizationId);
      checkServerId(v, "service_account_id", req.serviceAccountId);
      const fields = resolveUpdateMask(v, req.updateMask, req);
      const name = fields.has("name") ? checkName(v, req.name) : undefined;
      const description = fields.has("description") ? checkDescription(v, req.description) : undefined;
      v.throwIfAny();
      let at = now();
      try {
        const sa = await em.transactional(async (tx) => {
          const sa = await findServiceAccount(tx, req.organizationId, req.serviceAccountId, true);
          if (!sa) throw serviceAccountNotFound();
          if (sa.status === "revoked")
            throw new FailedPreconditionError(ErrorReason.ERROR_REASON_SERVICE_ACCOUNT_REVOKED, "The service account is revoked and can't be updated");
          // Read the clock once the lock is held, so update times and events follow commit order.
          at = now();
          const changes: Record<string, { from: string; to: string }> = {};
          if (name !== undefined && name !== sa.name) {
            if (await findActiveByName(tx, sa.organizationId, name)) throw nameTaken(name);
            changes.name = { from: sa.name, to: name };
            sa.name = name;
          }
          if (description !== undefined && description !== sa.description) {
            changes.description = { from: sa.description, to: description };
            sa.description = description;
          }
          if (Object.keys(changes).length > 0) {
            sa.updateTime = at;
            recordAuditEvent(tx, {
              organizationId: sa.organizationId,
              action: "service_account.updated",
              actor: actor!,
              targetType: "service_account",
              targetId: sa.id,
              occurTime: at,
              details: { changes },
            });
          }
          return sa;
        });
        return { serviceAccount: await toProto(em, sa, at) };
      } catch (err) {
        if (isActiveNameViolation(err)) throw nameTaken(name ?? "");
        throw err;
      }
    }),

    revokeServiceAccount: unary(deps, "RevokeServiceAccount", async (req: RevokeServiceAccountRequest, { em, log }): Promise<RevokeServiceAccountResponse> => {
      const v = new Violations();
      const actor = requireHumanActor(v, req.actor);
      checkOrganizationId(v, req.organizationId);
      checkServerId(v, "service_account_id", req.serviceAccountId);
      v.throwIfAny();
      // The account row is locked first, so a concurrent CreateToken (which locks it too)
      // either commits before us (and its token is revoked here) or sees the account revoked.
      const { sa, revokedTokenIds } = await em.transactional(async (tx) => {
        const sa = await findServiceAccount(tx, req.organizationId, req.serviceAccountId, true);
        if (!sa) throw serviceAccountNotFound();
        if (sa.status === "revoked") return { sa, revokedTokenIds: [] as string[] };
        // Read the clock once the lock is held: a token minted while we waited for it must not
        // read as revoked before it was created.
        const at = now();
        const revokedTokenIds = await revokeActiveTokensOf(tx, sa.id, at);
        sa.status = "revoked";
        sa.revokeTime = at;
        sa.updateTime = at;
        recordAuditEvent(tx, {
          organizationId: sa.organizationId,
          action: "service_account.revoked",
          actor: actor!,
          targetType: "service_account",
          targetId: sa.id,
          occurTime: at,
          details: { revoked_token_count: revokedTokenIds.length, revoked_token_ids: revokedTokenIds },
        });
        return { sa, revokedTokenIds };
      });
      // Also on a repeated revoke: a retry after a failed propagation must be able to succeed.
      await deps.revocations.publish({ tokenIds: revokedTokenIds, serviceAccountIds: [sa.id] });
      log.info({ organization_id: sa.organizationId, service_account_id: sa.id, revoked_token_ids: revokedTokenIds }, "service account revoked");
      return { serviceAccount: toServiceAccountProto(sa, 0), revokedTokenCount: revokedTokenIds.length };
    }),
  };
}

/** TokenService: the use cases behind each RPC, wired to grpc-js through `unary`. */
import { ErrorReason } from "../generated/pokerworks/identity/v1/error_reason";
import type {
  CreateTokenRequest,
  CreateTokenResponse,
  GetTokenRequest,
  GetTokenResponse,
  ListTokensRequest,
  ListTokensResponse,
  RevokeTokenRequest,
  RevokeTokenResponse,
  TokenServiceServer,
} from "../generated/pokerworks/identity/v1/token_service";
import { recordAuditEvent } from "../audit/recorder";
import type { RevocationPublisher } from "../authorization/revocation-publisher";
import { unary, type UnaryDeps } from "../grpc/unary";
import { serviceAccountNotFound } from "../service-accounts/handlers";
import { findServiceAccount } from "../service-accounts/store";
import { requireHumanActor } from "../shared/actor";
import { FailedPreconditionError, NotFoundError, ResourceExhaustedError, Violations } from "../shared/errors";
import { newId } from "../shared/ids";
import { checkPageSize, decodePageToken, encodePageToken } from "../shared/page-token";
import { checkOrganizationId, checkServerId } from "../shared/validation";
import { TokenEntity } from "./entity";
import { toTokenProto } from "./mapper";
import { checkTokenGrant, MAX_ACTIVE_TOKENS_PER_SERVICE_ACCOUNT } from "./rules";
import { countActiveTokens, findToken, listTokens } from "./store";
import { displayPrefix, generateToken, hashToken, lastFour } from "./token-format";

export interface TokenDeps extends UnaryDeps {
  revocations: RevocationPublisher;
  now?: () => Date;
}

const tokenNotFound = () => new NotFoundError(ErrorReason.ERROR_REASON_TOKEN_NOT_FOUND, "Token not found in this organization");

export function tokenHandlers(deps: TokenDeps): TokenServiceServer {
  const now = deps.now ?? (() => new Date());

  return {
    createToken: unary(deps, "CreateToken", async (req: CreateTokenRequest, { em, log }): Promise<CreateTokenResponse> => {
      const at = now();
      const v = new Violations();
      const actor = requireHumanActor(v, req.actor);
      checkOrganizationId(v, req.organizationId);
      checkServerId(v, "service_account_id", req.serviceAccountId);
      const grant = checkTokenGrant(v, req, at);
      v.throwIfAny();

      const secret = generateToken();
      const token = await em.transactional(async (tx) => {
        // Lock the account row: a concurrent RevokeServiceAccount either commits first (and we
        // see it revoked) or waits for this token and revokes it with the others.
        const sa = await findServiceAccount(tx, req.organizationId, req.serviceAccountId, true);
        if (!sa) throw serviceAccountNotFound();
        if (sa.status === "revoked")
          throw new FailedPreconditionError(ErrorReason.ERROR_REASON_SERVICE_ACCOUNT_REVOKED, "The service account is revoked and can't get new tokens");
        const active = (await countActiveTokens(tx, [sa.id], at)).get(sa.id) ?? 0;
        if (active >= MAX_ACTIVE_TOKENS_PER_SERVICE_ACCOUNT)
          throw new ResourceExhaustedError(
            ErrorReason.ERROR_REASON_TOKEN_LIMIT_REACHED,
            `The service account already has ${MAX_ACTIVE_TOKENS_PER_SERVICE_ACCOUNT} active tokens, the maximum; revoke one first`,
          );
        const token = Object.assign(new TokenEntity(), {
          id: newId("tok"),
          organizationId: sa.organizationId,
          serviceAccountId: sa.id,
          label: grant.label,
          secretHash: hashToken(secret),
          prefix: displayPrefix(secret),
          lastFour: lastFour(secret),
          scopes: grant.scopes,
          projectIds: grant.projectIds,
          environments: grant.environments,
          status: "active" as const,
          expireTime: grant.expireTime,
          createTime: at,
          createdByKind: actor!.kind,
          createdById: actor!.id,
        });
        tx.persist(token);
        recordAuditEvent(tx, {
          organizationId: sa.organizationId,
          projectIds: grant.projectIds,
          action: "token.created",
          actor: actor!,
          targetType: "token",
          targetId: token.id,
          occurTime: at,
          details: {
            service_account_id: sa.id,
            label: grant.label,
            prefix: token.prefix,
            scopes: grant.scopes,
            project_ids: grant.projectIds,
            environments: grant.environments,
            expire_time: grant.expireTime?.toISOString() ?? null,
          },
        });
        return token;
      });
      log.info({ organization_id: token.organizationId, service_account_id: token.serviceAccountId, token_id: token.id, prefix: token.prefix }, "token created");
      return { token: toTokenProto(token, at), secret };
    }),

    getToken: unary(deps, "GetToken", async (req: GetTokenRequest, { em }): Promise<GetTokenResponse> => {
      const v = new Violations();
      checkOrganizationId(v, req.organizationId);
      checkServerId(v, "token_id", req.tokenId);
      v.throwIfAny();
      const token = await findToken(em, req.organizationId, req.tokenId);
      if (!token) throw tokenNotFound();
      return { token: toTokenProto(token, now()) };
    }),

    listTokens: unary(deps, "ListTokens", async (req: ListTokensRequest, { em }): Promise<ListTokensResponse> => {
      const v = new Violations();
      checkOrganizationId(v, req.organizationId);
      if (req.serviceAccountId !== "") checkServerId(v, "service_account_id", req.serviceAccountId);
      const pageSize = checkPageSize(v, req.pageSize);
      v.throwIfAny();
      const binding = `tokens|${req.organizationId}|${req.serviceAccountId}|${req.includeInactive}`;
      const afterSeq = decodePageToken(req.pageToken, binding);
      if (req.serviceAccountId !== "" && !(await findServiceAccount(em, req.organizationId, req.serviceAccountId))) throw serviceAccountNotFound();
      const at = now();
      const rows = await listTokens(em, {
        organizationId: req.organizationId,
        serviceAccountId: req.serviceAccountId || undefined,
        includeInactive: req.includeInactive,
        now: at,
        afterSeq,
        limit: pageSize + 1,
      });
      const page = rows.slice(0, pageSize);
      return {
        tokens: page.map((t) => toTokenProto(t, at)),
        nextPageToken: rows.length > pageSize ? encodePageToken(page[page.length - 1]!.seq, binding) : "",
      };
    }),

    revokeToken: unary(deps, "RevokeToken", async (req: RevokeTokenRequest, { em, log }): Promise<RevokeTokenResponse> => {
      const v = new Violations();
      const actor = requireHumanActor(v, req.actor);
      checkOrganizationId(v, req.organizationId);
      checkServerId(v, "token_id", req.tokenId);
      v.throwIfAny();
      const at = now();
      const token = await em.transactional(async (tx) => {
        const token = await findToken(tx, req.organizationId, req.tokenId, true);
        if (!token) throw tokenNotFound();
        if (token.status === "revoked") return token;
        token.status = "revoked";
        token.revokeTime = at;
        recordAuditEvent(tx, {
          organizationId: token.organizationId,
          projectIds: token.projectIds,
          action: "token.revoked",
          actor: actor!,
          targetType: "token",
          targetId: token.id,
          occurTime: at,
          details: { service_account_id: token.serviceAccountId, label: token.label, prefix: token.prefix },
        });
        return token;
      });
      // Also on a repeated revoke: a retry after a failed propagation must be able to succeed.
      await deps.revocations.publish({ tokenIds: [token.id], serviceAccountIds: [] });
      log.info({ organization_id: token.organizationId, token_id: token.id }, "token revoked");
      return { token: toTokenProto(token, at) };
    }),
  };
}

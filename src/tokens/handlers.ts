/** TokenService: the use cases behind each RPC, wired to grpc-js through `unary`. */
import type {
  CreateTokenRequest,
  CreateTokenResponse,
  GetTokenRequest,
  GetTokenResponse,
  ListTokensRequest,
  ListTokensResponse,
  RevokeTokenRequest,
  ReportLeakedTokensRequest,
  RevokeTokenResponse,
  RevokeTokensIssuedBeforeRequest,
  RotateTokenRequest,
  TokenServiceServer,
} from "../generated/pokerworks/identity/v1/token_service";
import { recordAuditEvent } from "../audit/recorder";
import type { RevocationPublisher } from "../authorization/revocation-publisher";
import { unary, type UnaryDeps } from "../grpc/unary";
import { serviceAccountNotFound } from "../service-accounts/errors";
import { findServiceAccount } from "../service-accounts/store";
import { requireHumanActor } from "../shared/actor";
import { Violations } from "../shared/errors";
import { checkPageSize, decodePageToken, encodePageToken } from "../shared/page-token";
import { checkOrganizationId, checkServerId } from "../shared/validation";
import { reportLeakedTokens, revokeTokensIssuedBefore, rotateToken, tokenNotFound } from "./lifecycle";
import { mintToken, tokenAuditDetails } from "./mint";
import { toTokenProto } from "./mapper";
import { checkTokenGrant } from "./rules";
import { findToken, listTokens } from "./store";

export interface TokenDeps extends UnaryDeps {
  revocations: RevocationPublisher;
  now?: () => Date;
}


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

      const { token, secret } = await em.transactional(async (tx) => {
        const minted = await mintToken(tx, { organizationId: req.organizationId, serviceAccountId: req.serviceAccountId, grant, actor: actor!, now });
        recordAuditEvent(tx, {
          organizationId: minted.token.organizationId,
          projectIds: grant.projectIds,
          action: "token.created",
          actor: actor!,
          targetType: "token",
          targetId: minted.token.id,
          occurTime: minted.token.createTime,
          details: tokenAuditDetails(minted.token),
        });
        return minted;
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

    rotateToken: unary(deps, "RotateToken", async (req: RotateTokenRequest, { em, log }) => {
      const res = await rotateToken(em, deps.revocations, req, now());
      log.info({ organization_id: req.organizationId, token_id: res.token!.id, previous_token_id: req.tokenId, prefix: res.token!.prefix }, "token rotated");
      return res;
    }),

    reportLeakedTokens: unary(deps, "ReportLeakedTokens", (req: ReportLeakedTokensRequest, { em, log }) => reportLeakedTokens(em, deps.revocations, log, req, now())),

    revokeTokensIssuedBefore: unary(deps, "RevokeTokensIssuedBefore", async (req: RevokeTokensIssuedBeforeRequest, { em, log }) => {
      const res = await revokeTokensIssuedBefore(em, deps.revocations, req, now());
      log.info({ organization_id: req.organizationId, revoked_token_ids: res.revokedTokenIds }, "tokens issued before a time revoked");
      return res;
    }),
  };
}

/** AuditService: reading the audit trail. */
import type { AuditServiceServer, ListAuditEventsRequest, ListAuditEventsResponse } from "../generated/pokerworks/identity/v1/audit_service";
import { unary, type UnaryDeps } from "../grpc/unary";
import { Violations } from "../shared/errors";
import { checkPageSize, decodePageToken, encodePageToken } from "../shared/page-token";
import { checkOrganizationId, checkResourceId } from "../shared/validation";
import { AuditEventEntity } from "./entity";
import { toAuditEventProto } from "./mapper";

export function auditHandlers(deps: UnaryDeps): AuditServiceServer {
  return {
    listAuditEvents: unary(deps, "ListAuditEvents", async (req: ListAuditEventsRequest, { em }): Promise<ListAuditEventsResponse> => {
      const v = new Violations();
      checkOrganizationId(v, req.organizationId);
      if (req.projectId !== "") checkResourceId(v, "project_id", req.projectId, "project_id");
      const pageSize = checkPageSize(v, req.pageSize);
      v.throwIfAny();
      const binding = `audit|${req.organizationId}|${req.projectId}`;
      const beforeSeq = decodePageToken(req.pageToken, binding);
      const rows = await em.find(
        AuditEventEntity,
        {
          organizationId: req.organizationId,
          ...(req.projectId !== "" ? { projectIds: { $contains: [req.projectId] } } : {}),
          ...(beforeSeq ? { seq: { $lt: beforeSeq } } : {}),
        },
        { orderBy: { seq: "desc" }, limit: pageSize + 1 },
      );
      const page = rows.slice(0, pageSize);
      return {
        events: page.map(toAuditEventProto),
        nextPageToken: rows.length > pageSize ? encodePageToken(page[page.length - 1]!.seq, binding) : "",
      };
    }),
  };
}

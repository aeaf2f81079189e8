/**
 * Who may call what. With mutual TLS each caller is identified by its client certificate's
 * subject alternative names (DNS or URI); CALLER_POLICY maps caller names to the services
 * they may call. Pure: parsing and checking, no I/O.
 *
 *   CALLER_POLICY="console-backend=ServiceAccountService,TokenService,AuditService,AuthorizationService;*=AuthorizationService"
 *
 * `*` as a caller means any caller with a valid certificate; `*` as a service means every
 * service; `Service.Method` grants one method only (e.g. a secret-scanning partner:
 * `secret-scanner=TokenService.ReportLeakedTokens`). Health and reflection are open to every
 * authenticated caller.
 */
import type { PeerCertificate } from "node:tls";

export const POLICY_SERVICES = ["ServiceAccountService", "TokenService", "AuditService", "AuthorizationService", "OrganizationPolicyService"] as const;
export type PolicyService = (typeof POLICY_SERVICES)[number];

/** Caller name → grants: a whole service (`TokenService`) or one method (`TokenService.ReportLeakedTokens`). */
export type CallerPolicy = ReadonlyMap<string, ReadonlySet<string>>;

export function parseCallerPolicy(raw: string): CallerPolicy {
  const policy = new Map<string, Set<string>>();
  for (const entry of raw.split(";").map((e) => e.trim()).filter(Boolean)) {
    const eq = entry.indexOf("=");
    if (eq <= 0) throw new Error(`entry '${entry}' must look like caller=Service1,Service2`);
    const caller = entry.slice(0, eq).trim();
    if (!/^(\*|[A-Za-z0-9._:/-]{1,253})$/.test(caller)) throw new Error(`'${caller}' is not a caller name (a certificate DNS or URI SAN, or *)`);
    const services = policy.get(caller) ?? new Set<string>();
    for (const s of entry.slice(eq + 1).split(",").map((x) => x.trim()).filter(Boolean)) {
      const [service, method, extra] = s.split(".");
      if (s === "*") POLICY_SERVICES.forEach((x) => services.add(x));
      else if ((POLICY_SERVICES as readonly string[]).includes(service!) && extra === undefined && (method === undefined || /^[A-Z][A-Za-z]{1,63}$/.test(method)))
        services.add(s);
      else throw new Error(`'${s}' is not a service or Service.Method; services are ${POLICY_SERVICES.join(", ")} (or *)`);
    }
    policy.set(caller, services);
  }
  if (policy.size === 0) throw new Error("must name at least one caller");
  return policy;
}

/** The names a certificate proves: its DNS and URI subject alternative names. */
export function callerNames(cert: PeerCertificate | undefined): string[] {
  const san = cert?.subjectaltname;
  if (!san) return [];
  return san
    .split(/,\s*/)
    .map((part) => /^(?:DNS|URI):(.+)$/.exec(part.trim())?.[1])
    .filter((x): x is string => x !== undefined);
}

export function isAllowed(policy: CallerPolicy, names: readonly string[], service: PolicyService, method = ""): boolean {
  const grants = (g: ReadonlySet<string> | undefined) => g !== undefined && (g.has(service) || (method !== "" && g.has(`${service}.${method}`)));
  if (names.length > 0 && grants(policy.get("*"))) return true;
  return names.some((n) => grants(policy.get(n)));
}

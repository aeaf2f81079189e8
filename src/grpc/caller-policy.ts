/**
 * Who may call what. With mutual TLS each caller is identified by its client certificate's
 * subject alternative names (DNS or URI); CALLER_POLICY maps caller names to the services
 * they may call. Pure: parsing and checking, no I/O.
 *
 *   CALLER_POLICY="console-backend=ServiceAccountService,TokenService,AuditService,AuthorizationService;*=AuthorizationService"
 *
 * `*` as a caller means any caller with a valid certificate; `*` as a service means every
 * service. Health and reflection are open to every authenticated caller.
 */
import type { PeerCertificate } from "node:tls";

export const POLICY_SERVICES = ["ServiceAccountService", "TokenService", "AuditService", "AuthorizationService"] as const;
export type PolicyService = (typeof POLICY_SERVICES)[number];

export type CallerPolicy = ReadonlyMap<string, ReadonlySet<PolicyService>>;

export function parseCallerPolicy(raw: string): CallerPolicy {
  const policy = new Map<string, Set<PolicyService>>();
  for (const entry of raw.split(";").map((e) => e.trim()).filter(Boolean)) {
    const eq = entry.indexOf("=");
    if (eq <= 0) throw new Error(`entry '${entry}' must look like caller=Service1,Service2`);
    const caller = entry.slice(0, eq).trim();
    if (!/^(\*|[A-Za-z0-9._:/-]{1,253})$/.test(caller)) throw new Error(`'${caller}' is not a caller name (a certificate DNS or URI SAN, or *)`);
    const services = policy.get(caller) ?? new Set<PolicyService>();
    for (const s of entry.slice(eq + 1).split(",").map((x) => x.trim()).filter(Boolean)) {
      if (s === "*") POLICY_SERVICES.forEach((x) => services.add(x));
      else if ((POLICY_SERVICES as readonly string[]).includes(s)) services.add(s as PolicyService);
      else throw new Error(`'${s}' is not a service; use ${POLICY_SERVICES.join(", ")} or *`);
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

export function isAllowed(policy: CallerPolicy, names: readonly string[], service: PolicyService): boolean {
  if (policy.get("*")?.has(service)) return names.length > 0;
  return names.some((n) => policy.get(n)?.has(service) === true);
}

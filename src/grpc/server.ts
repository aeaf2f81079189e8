/** Builds the grpc-js server with every service of the contract. */
import { Server, ServerCredentials, type ServerOptions, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { AuditServiceService } from "../generated/pokerworks/identity/v1/audit_service";
import { AuthorizationServiceService } from "../generated/pokerworks/identity/v1/authorization_service";
import { ServiceAccountServiceService } from "../generated/pokerworks/identity/v1/service_account_service";
import { TokenServiceService } from "../generated/pokerworks/identity/v1/token_service";
import { OrganizationPolicyServiceService, type OrganizationPolicyServiceServer } from "../generated/pokerworks/identity/v1/organization_policy_service";
import type { AuditServiceServer } from "../generated/pokerworks/identity/v1/audit_service";
import type { AuthorizationServiceServer } from "../generated/pokerworks/identity/v1/authorization_service";
import type { ServiceAccountServiceServer } from "../generated/pokerworks/identity/v1/service_account_service";
import type { TokenServiceServer } from "../generated/pokerworks/identity/v1/token_service";
import { withStrictDecoding } from "./request-decoding";

export interface Services {
  serviceAccounts: ServiceAccountServiceServer;
  tokens: TokenServiceServer;
  audit: AuditServiceServer;
  authorization: AuthorizationServiceServer;
  tokenPolicies: OrganizationPolicyServiceServer;
}

export const SERVICE_NAMES = {
  serviceAccounts: "pokerworks.identity.v1.ServiceAccountService",
  tokens: "pokerworks.identity.v1.TokenService",
  audit: "pokerworks.identity.v1.AuditService",
  authorization: "pokerworks.identity.v1.AuthorizationService",
  tokenPolicies: "pokerworks.identity.v1.OrganizationPolicyService",
} as const;

/**
 * Every service of ours added to this server decodes its requests strictly
 * (request-decoding.ts): a request that is not a valid message is INVALID_ARGUMENT, never
 * INTERNAL, and invalid UTF-8 is refused rather than replaced.
 */
class StrictDecodingServer extends Server {
  override addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void {
    super.addService(withStrictDecoding(service), implementation);
  }
}

export function buildServer(services: Services, options: ServerOptions): Server {
  const server = new StrictDecodingServer(options);
  server.addService(ServiceAccountServiceService, services.serviceAccounts);
  server.addService(TokenServiceService, services.tokens);
  server.addService(AuditServiceService, services.audit);
  server.addService(AuthorizationServiceService, services.authorization);
  server.addService(OrganizationPolicyServiceService, services.tokenPolicies);
  return server;
}

export function bind(server: Server, address: string, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port))));
}

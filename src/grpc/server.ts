/** Builds the grpc-js server with every service of the contract. */
import { Server, ServerCredentials, type ServerOptions } from "@grpc/grpc-js";
import { AuditServiceService } from "../generated/pokerworks/identity/v1/audit_service";
import { AuthorizationServiceService } from "../generated/pokerworks/identity/v1/authorization_service";
import { ServiceAccountServiceService } from "../generated/pokerworks/identity/v1/service_account_service";
import { TokenServiceService } from "../generated/pokerworks/identity/v1/token_service";
import type { AuditServiceServer } from "../generated/pokerworks/identity/v1/audit_service";
import type { AuthorizationServiceServer } from "../generated/pokerworks/identity/v1/authorization_service";
import type { ServiceAccountServiceServer } from "../generated/pokerworks/identity/v1/service_account_service";
import type { TokenServiceServer } from "../generated/pokerworks/identity/v1/token_service";

export interface Services {
  serviceAccounts: ServiceAccountServiceServer;
  tokens: TokenServiceServer;
  audit: AuditServiceServer;
  authorization: AuthorizationServiceServer;
}

export const SERVICE_NAMES = {
  serviceAccounts: "pokerworks.identity.v1.ServiceAccountService",
  tokens: "pokerworks.identity.v1.TokenService",
  audit: "pokerworks.identity.v1.AuditService",
  authorization: "pokerworks.identity.v1.AuthorizationService",
} as const;

export function buildServer(services: Services, options: ServerOptions): Server {
  const server = new Server(options);
  server.addService(ServiceAccountServiceService, services.serviceAccounts);
  server.addService(TokenServiceService, services.tokens);
  server.addService(AuditServiceService, services.audit);
  server.addService(AuthorizationServiceService, services.authorization);
  return server;
}

export function bind(server: Server, address: string, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port))));
}

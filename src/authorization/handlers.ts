/** AuthorizationService over grpc-js. */
import type { AuthorizationServiceServer, AuthorizeRequest, AuthorizeResponse } from "../generated/pokerworks/identity/v1/authorization_service";
import { unary, type UnaryDeps } from "../grpc/unary";
import type { Authorizer } from "./authorizer";

export function authorizationHandlers(deps: UnaryDeps, authorizer: Authorizer): AuthorizationServiceServer {
  return {
    authorize: unary(deps, "Authorize", (req: AuthorizeRequest, ctx): Promise<AuthorizeResponse> => authorizer.authorize(req, ctx.caller), { quiet: true }),
  };
}

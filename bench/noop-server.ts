/**
 * The limit: a grpc-js server with the same AuthorizationService definition (the same
 * ts-proto serialisation) that answers every Authorize, without looking at it, with an
 * AuthorizeResponse of the same size and shape as the service's answer for an allowed
 * token. The load generators use the same client setup against it.
 */
import { Server, ServerCredentials } from "@grpc/grpc-js";
import {
  type AuthorizationServiceServer,
  AuthorizationServiceService,
  AuthorizeResponse,
  DecisionReason,
} from "../src/generated/pokerworks/identity/v1/authorization_service";
import { newId } from "../src/shared/ids";
import { BENCH_ORG, type FromServer, SCOPE_GRANTED, SEED_SCOPES } from "./common";

const tokenId = newId("tok");
/**
 * The service's answer for an allowed token, with the same field values and sizes. Built
 * with fromPartial so fields added to the contract later stay at their defaults, as in the
 * service's answer; copied per call, as the service builds a new object per call.
 */
const template = AuthorizeResponse.fromPartial({
  allowed: true,
  reason: DecisionReason.DECISION_REASON_ALLOWED,
  message: `Token ${tokenId} may use '${SCOPE_GRANTED}'.`,
  principal: {
    organizationId: BENCH_ORG,
    serviceAccountId: `sa_${"x".repeat(24)}`,
    tokenId,
    scopes: SEED_SCOPES,
    projectIds: [],
    environments: [],
  },
});
const answer = (): AuthorizeResponse => ({ ...template, principal: { ...template.principal! } });

const handlers: AuthorizationServiceServer = {
  authorize: (_call, callback) => callback(null, answer()),
};

const server = new Server({ "grpc.max_concurrent_streams": 1000, "grpc.max_receive_message_length": 1024 * 1024 });
server.addService(AuthorizationServiceService, handlers);
server.bindAsync(process.env.LISTEN_ADDRESS ?? "127.0.0.1:0", ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.stderr.write(`noop server failed to bind: ${err.message}\n`);
    process.exit(1);
  }
  process.send?.({ type: "ready", address: `127.0.0.1:${port}` } satisfies FromServer);
});
const stop = () => server.tryShutdown(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("disconnect", stop);

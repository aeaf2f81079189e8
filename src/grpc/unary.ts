/**
 * Adapts an async feature handler to grpc-js: one EntityManager fork per call, a request
 * id, one log line, metrics, and the error boundary.
 */
import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import type { MikroORM, EntityManager } from "@mikro-orm/postgresql";
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { ErrorReason } from "../generated/pokerworks/identity/v1/error_reason";
import { InvalidArgumentError, PermissionDeniedError, UnavailableError } from "../shared/errors";
import { type CallerPolicy, callerNames, isAllowed, type PolicyService } from "./caller-policy";
import { toServiceError } from "./error-boundary";
import { RequestDecodeFailure } from "./request-decoding";

export interface CallContext {
  /** The fork of the EntityManager that belongs to this call only. */
  readonly em: EntityManager;
  readonly requestId: string;
  readonly log: Logger;
  /** The calling service, from its client certificate, when TLS is on. */
  readonly caller?: string;
}

export interface CallObserver {
  /** Called once per call with the final gRPC status code. */
  observe(method: string, code: number, seconds: number): void;
}

export interface UnaryDeps {
  orm: MikroORM;
  log: Logger;
  observer?: CallObserver;
  /** Set when mutual TLS is on: a caller may only call the services the policy grants it. */
  callerPolicy?: CallerPolicy;
  /** True once shutdown has begun: new calls are refused with UNAVAILABLE. */
  isDraining?: () => boolean;
}

/** `/pokerworks.identity.v1.TokenService/CreateToken` → [`TokenService`, `CreateToken`]. */
function serviceOf(path: string): [PolicyService, string] {
  const [, full = "", method = ""] = path.split("/");
  return [full.slice(full.lastIndexOf(".") + 1) as PolicyService, method];
}

function checkCaller(deps: UnaryDeps, call: ServerUnaryCall<unknown, unknown>): string | undefined {
  if (!deps.callerPolicy) return undefined;
  const names = callerNames(call.getAuthContext()?.sslPeerCertificate);
  const [service, method] = serviceOf(call.getPath());
  if (!isAllowed(deps.callerPolicy, names, service, method))
    throw new PermissionDeniedError(
      ErrorReason.ERROR_REASON_CALLER_NOT_ALLOWED,
      `Caller ${names.length ? names.map((n) => `'${n}'`).join(", ") : "(no certificate name)"} is not allowed to call ${service}.${method} (CALLER_POLICY)`,
    );
  return names[0];
}

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestIdOf(call: ServerUnaryCall<unknown, unknown>): string {
  const given = call.metadata.get("x-request-id")[0];
  return typeof given === "string" && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
}

export function unary<Req, Res>(
  deps: UnaryDeps,
  method: string,
  handler: (request: Req, ctx: CallContext) => Promise<Res>,
  options: { quiet?: boolean } = {},
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    const started = process.hrtime.bigint();
    // Made on first use: a quiet call that succeeds (Authorize) never logs, so it pays for
    // neither a UUID nor a pino child logger.
    let requestId: string | undefined;
    let callLog: Logger | undefined;
    const requestIdNow = () => (requestId ??= requestIdOf(call as ServerUnaryCall<unknown, unknown>));
    const logNow = () => (callLog ??= deps.log.child({ request_id: requestIdNow(), method }));
    let em: EntityManager | undefined;
    let caller: string | undefined;
    const finish = (code: number) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      deps.observer?.observe(method, code, seconds);
      if (!options.quiet || code !== 0) logNow().info({ code, duration_ms: Math.round(seconds * 1e4) / 10, caller }, "call finished");
    };
    const fail = (err: unknown) => {
      const error = toServiceError(err, logNow(), method);
      finish(error.code);
      callback(error);
    };
    try {
      if (deps.isDraining?.()) throw new UnavailableError("The identity service is shutting down; retry on another replica", ErrorReason.ERROR_REASON_SHUTTING_DOWN);
      caller = checkCaller(deps, call as ServerUnaryCall<unknown, unknown>);
      const request: unknown = call.request;
      if (request instanceof RequestDecodeFailure) throw new InvalidArgumentError([{ field: request.field, description: request.description }]);
    } catch (err) {
      fail(err);
      return;
    }
    const ctx: CallContext = {
      // Forked on first use, so calls that never touch the ORM (Authorize) don't pay for it.
      get em() {
        return (em ??= deps.orm.em.fork() as EntityManager);
      },
      get requestId() {
        return requestIdNow();
      },
      get log() {
        return logNow();
      },
      caller,
    };
    handler(call.request, ctx).then((response) => {
      finish(0);
      callback(null, response);
    }, fail);
  };
}

import { ErrorReason } from "../generated/pokerworks/identity/v1/error_reason";
import { NotFoundError } from "../shared/errors";

export const serviceAccountNotFound = () =>
  new NotFoundError(ErrorReason.ERROR_REASON_SERVICE_ACCOUNT_NOT_FOUND, "Service account not found in this organization");

/**
 * What the issuance side needs from the revocation machinery: after a revocation has
 * committed in PostgreSQL, make every replica refuse the tokens before the RPC returns.
 */
export interface Revoked {
  tokenIds: string[];
  serviceAccountIds: string[];
  /**
   * Tokens changed without being revoked (rotated: superseded, expiry brought forward):
   * replicas re-read them from PostgreSQL instead of trusting a cached record.
   */
  changedTokenIds?: string[];
}

export interface RevocationPublisher {
  /**
   * Resolves only once every replica's next Authorize will refuse these tokens; throws
   * (UNAVAILABLE) when that can't be guaranteed, so the Revoke RPC does not report success.
   */
  publish(revoked: Revoked): Promise<void>;
}

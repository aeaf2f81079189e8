/** Recognises errors that mean a dependency (PostgreSQL, Redis) could not be reached or answer in time. */

const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "ECONNABORTED"]);
// PostgreSQL SQLSTATEs: connection exceptions (08...), operator intervention (57...: shutdown,
// statement timeout), insufficient resources (53...: too many connections).
const PG_UNAVAILABLE_CLASSES = ["08", "57", "53"];

function looksUnavailable(e: Record<string, unknown>): boolean {
  const code = typeof e.code === "string" ? e.code : undefined;
  if (code && NETWORK_CODES.has(code)) return true;
  if (code && code.length === 5 && PG_UNAVAILABLE_CLASSES.some((c) => code.startsWith(c))) return true;
  const name = typeof e.name === "string" ? e.name : "";
  if (name === "KnexTimeoutError" || name === "ConnectionException" || name === "MaxRetriesPerRequestError") return true;
  const message = typeof e.message === "string" ? e.message : "";
  // "Transaction query already complete": knex ends a transaction whose BEGIN failed because
  // the connection died (PostgreSQL stopped or failed over); the next query in it says so.
  return /Connection terminated|connection timeout|Timeout acquiring a connection|Connection is closed|timeout exceeded when trying to connect|Client has encountered a connection error|Stream isn't writeable|Redis command timed out|Transaction query already complete/i.test(message);
}

export function isDependencyUnavailable(err: unknown): boolean {
  let current: unknown = err;
  for (let depth = 0; depth < 5 && current && typeof current === "object"; depth++) {
    const e = current as Record<string, unknown>;
    if (looksUnavailable(e)) return true;
    current = e.cause ?? e.previous;
  }
  return false;
}

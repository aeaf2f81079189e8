/** Field validators shared by every feature. Pure functions; they add to a Violations list. */
import { Violations } from "./errors";

export const RESOURCE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const MAX_ID_LENGTH = 128;

export function hasControlChars(value: string): boolean {
  return CONTROL_CHARS.test(value);
}

/** Printable length in code points (so an emoji counts once). */
export function charLength(value: string): number {
  let n = 0;
  for (const _ of value) n++;
  return n;
}

/** Organization and project ids. */
export function checkResourceId(v: Violations, field: string, value: string, what: string): void {
  if (value === "") v.add(field, `${what} is required`);
  else if (!RESOURCE_ID_PATTERN.test(value))
    v.add(field, `${what} must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$ (1 to 64 letters, digits, '_' or '-', starting with a letter or digit)`);
}

export function checkOrganizationId(v: Violations, value: string): void {
  checkResourceId(v, "organization_id", value, "organization_id");
}

/** A server-assigned id given back by a client: required, bounded, printable. Unknown ids are NOT_FOUND later. */
export function checkServerId(v: Violations, field: string, value: string): void {
  if (value === "") v.add(field, `${field} is required`);
  else if (value.length > MAX_ID_LENGTH || hasControlChars(value))
    v.add(field, `${field} must be at most ${MAX_ID_LENGTH} printable characters`);
}

/**
 * A display string: trimmed, then `min`..`max` characters, no control characters.
 * Returns the trimmed value.
 */
export function checkText(v: Violations, field: string, value: string, min: number, max: number): string {
  const trimmed = value.trim();
  const len = charLength(trimmed);
  if (len < min) v.add(field, min === 1 ? `${field} is required (empty after trimming white space)` : `${field} must be at least ${min} characters`);
  else if (len > max) v.add(field, `${field} must be at most ${max} characters after trimming (got ${len})`);
  else if (hasControlChars(trimmed)) v.add(field, `${field} must not contain control characters`);
  return trimmed;
}

/** Keeps the first occurrence of each value, in order. */
export function dedupe(values: readonly string[]): string[] {
  return [...new Set(values)];
}

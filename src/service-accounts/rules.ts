/** Validation of service account requests. Pure: no I/O. */
import type { Violations } from "../shared/errors";
import { charLength, checkText } from "../shared/validation";

export const NAME_MAX = 100;
export const DESCRIPTION_MAX = 500;
const DESCRIPTION_FORBIDDEN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u2028\u2029]/;

export function checkName(v: Violations, name: string): string {
  return checkText(v, "name", name, 1, NAME_MAX);
}

/** Descriptions may span lines (newline, tab) but hold no other control characters. */
export function checkDescription(v: Violations, description: string): string {
  const trimmed = description.trim();
  const len = charLength(trimmed);
  if (len > DESCRIPTION_MAX) v.add("description", `description must be at most ${DESCRIPTION_MAX} characters (got ${len})`);
  else if (DESCRIPTION_FORBIDDEN.test(trimmed)) v.add("description", "description must not contain control characters other than newlines and tabs");
  return trimmed;
}

export type UpdatableField = "name" | "description";

/**
 * Resolves an update mask: `name`, `description` or `*`. An empty mask means every field
 * that is set (non-empty) in the request (AIP-134).
 */
export function resolveUpdateMask(v: Violations, paths: readonly string[] | undefined, req: { name: string; description: string }): Set<UpdatableField> {
  const fields = new Set<UpdatableField>();
  if (!paths || paths.length === 0) {
    if (req.name !== "") fields.add("name");
    if (req.description !== "") fields.add("description");
    if (fields.size === 0) v.add("update_mask", "nothing to update: set update_mask to name and/or description, or give a non-empty name or description");
    return fields;
  }
  for (const path of paths) {
    if (path === "*") {
      fields.add("name");
      fields.add("description");
    } else if (path === "name" || path === "description") fields.add(path);
    else v.add("update_mask", `unknown update_mask path '${path.slice(0, 64)}': only 'name', 'description' and '*' can be updated`);
  }
  return fields;
}

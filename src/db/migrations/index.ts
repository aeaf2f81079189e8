/** Every migration, in order. Listed explicitly so the same list works from src (tests) and dist. */
import { Migration20261204000000_initial } from "./Migration20261204000000_initial";
import { Migration20261204010000_lifecycle } from "./Migration20261204010000_lifecycle";

export const migrationsList = [
  { name: "Migration20261204000000_initial", class: Migration20261204000000_initial },
  { name: "Migration20261204010000_lifecycle", class: Migration20261204010000_lifecycle },
];

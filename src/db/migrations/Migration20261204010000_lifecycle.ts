import { Migration } from "@mikro-orm/migrations";

/** Token lifecycle: rotation links, usage details, organization token policies, new audit actions. */
export class Migration20261204010000_lifecycle extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      alter table tokens
        add column superseded_by_token_id text null references tokens (id),
        add column replaces_token_id text null references tokens (id),
        add column last_used_caller text null,
        add column last_used_scope text null`);
    this.addSql(`create unique index tokens_superseded_once on tokens (superseded_by_token_id) where superseded_by_token_id is not null`);
    this.addSql(`create index tokens_active_by_org_create_time on tokens (organization_id, create_time) where status = 'active'`);
    this.addSql(`create index tokens_revoke_time on tokens (revoke_time) where status = 'revoked'`);
    this.addSql(`create index service_accounts_revoke_time on service_accounts (revoke_time) where status = 'revoked'`);

    this.addSql(`
      create table token_policies (
        organization_id text primary key,
        max_token_lifetime_seconds bigint null check (max_token_lifetime_seconds between 60 and 315360000),
        require_expiry boolean not null,
        update_time timestamptz not null,
        updated_by_kind text not null check (updated_by_kind in ('user', 'management_token', 'system')),
        updated_by_id text not null
      )`);

    this.addSql(`alter table audit_events drop constraint audit_events_action_check`);
    this.addSql(`alter table audit_events add constraint audit_events_action_check check (action in (
      'service_account.created', 'service_account.updated', 'service_account.revoked',
      'token.created', 'token.revoked', 'token.rotated', 'token.leaked', 'token_policy.updated'))`);
    this.addSql(`alter table audit_events drop constraint audit_events_target_type_check`);
    this.addSql(`alter table audit_events add constraint audit_events_target_type_check check (target_type in ('service_account', 'token', 'organization'))`);
    this.addSql(`alter table audit_events drop constraint audit_events_actor_kind_check`);
    this.addSql(`alter table audit_events add constraint audit_events_actor_kind_check check (actor_kind in ('user', 'management_token', 'system'))`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists token_policies`);
    this.addSql(`alter table tokens drop column superseded_by_token_id, drop column replaces_token_id, drop column last_used_caller, drop column last_used_scope`);
  }
}

-- The pieces of a Supabase database that its image and services create before any project
-- migration runs, mirrored for the dev stack with the same names, signatures, owners and grants.
-- Applied once per database by the dev stack (idempotent); never part of supabase/migrations.
-- It runs as the superuser (supabase_admin), as the image's own set-up does; the cluster's
-- roles come first, from roles.sql. Upstream, unless named otherwise: supabase/postgres
-- migrations/db/init-scripts/00000000000000-initial-schema.sql ("initial-schema.sql") and the
-- files under migrations/db/migrations/ named below.

-- Schema public: the API roles use it, and what postgres or supabase_admin creates there is
-- granted to them. initial-schema.sql:34-37 ran as postgres, :46-51 for supabase_admin.
grant usage on schema public to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on sequences to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
  grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
  grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
  grant all on sequences to postgres, anon, authenticated, service_role;

-- Extensions live in their own schema on Supabase. The image's set-up makes it as postgres,
-- before the demotion (initial-schema.sql:18; migrate.sh:41-45 runs that file as postgres), so
-- postgres owns it. pgcrypto is enabled in every project (initial-schema.sql:20).
create schema if not exists extensions authorization postgres;
grant usage on schema extensions to postgres, anon, authenticated, service_role;
create extension if not exists pgcrypto with schema extensions;

-- pg_net's grants on Supabase: at `create extension pg_net` an event trigger makes sure the role
-- Database Webhooks run as exists and gives the API roles USAGE on schema net; from pg_net 0.12
-- on it changes nothing else. Upstream: supabase/postgres
-- migrations/db/migrations/20250220051611_pg_net_perms_fix.sql (extensions.grant_pg_net_access).
create or replace function extensions.grant_pg_net_access()
returns event_trigger
language plpgsql
as $$
begin
  if exists (
    select from pg_event_trigger_ddl_commands() c
      join pg_extension e on c.objid = e.oid
     where e.extname = 'pg_net'
  ) then
    if not exists (select from pg_roles where rolname = 'supabase_functions_admin') then
      create user supabase_functions_admin noinherit createrole login noreplication;
    end if;
    grant usage on schema net
      to supabase_functions_admin, postgres, anon, authenticated, service_role;
  end if;
end
$$;
do $$
begin
  if not exists (select from pg_event_trigger where evtname = 'issue_pg_net_access') then
    create event trigger issue_pg_net_access on ddl_command_end
      when tag in ('CREATE EXTENSION')
      execute function extensions.grant_pg_net_access();
  end if;
end
$$;

-- Auth. Upstream: supabase/postgres migrations/db/init-scripts/00000000000001-auth-schema.sql and
-- supabase/auth migrations/20220224000811_update_auth_functions.up.sql (auth.jwt()). GoTrue owns
-- many more columns on auth.users; the ones a project's foreign keys and RLS use are here.
-- The schema belongs to supabase_admin (auth-schema.sql:3), its tables and functions to GoTrue's
-- supabase_auth_admin (auth-schema.sql:113-117; 20211124212715_update-auth-owner.sql); postgres
-- may use them all but create nothing there (20211115181400_update-auth-permissions.sql:14-17;
-- 20250421084701_revoke_admin_roles_from_postgres.sql took back CREATE on the schema).
create schema if not exists auth authorization supabase_admin;
grant usage on schema auth to anon, authenticated, service_role;
grant all on schema auth to supabase_auth_admin;
grant usage on schema auth to postgres;

create table if not exists auth.users (
  instance_id uuid,
  id uuid primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_anonymous boolean not null default false,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

create or replace function auth.uid()
returns uuid
language sql
stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role()
returns text
language sql
stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.email()
returns text
language sql
stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

create or replace function auth.jwt()
returns jsonb
language sql
stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

grant execute on function auth.uid(), auth.role(), auth.email(), auth.jwt()
  to anon, authenticated, service_role;
alter table auth.users owner to supabase_auth_admin;
alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.email() owner to supabase_auth_admin;
alter function auth.jwt() owner to supabase_auth_admin;
grant all on all tables in schema auth to postgres;
grant all on all sequences in schema auth to postgres;
grant all on all routines in schema auth to postgres;

-- Extensions a project enables. On hosted, `create extension` of a privileged extension
-- (supautils.privileged_extensions, which lists all of these) is run by supautils as
-- supabase_admin, which then owns the extension and its objects, followed by the extension's
-- after-create script (supabase/supautils src/supautils.c:611-651; supabase/postgres
-- ansible/files/postgresql_config/supautils.conf.j2). PostgreSQL without supautils cannot let
-- postgres do that, so the stand-in for supautils is this: supabase_admin creates them here,
-- before the migrations, and runs the same after-create grants. A migration's
-- `create extension if not exists` then finds the extension and skips, leaving what supautils
-- would have left; a privileged extension not listed here is refused to postgres (docs/design.md).
create extension if not exists pg_net with schema extensions;
create extension if not exists pg_jsonschema with schema extensions;

-- Vault is enabled in every Supabase project; postgres and service_role use it through these
-- grants (supabase/postgres ansible/files/postgresql_extension_custom_scripts/
-- supabase_vault/after-create.sql:1-3 and 6-8; migrations/db/migrations/
-- 20221207154255_create_vault.sql). The root key and the other crypto functions stay
-- supabase_admin's alone.
create extension if not exists supabase_vault;
grant usage on schema vault to postgres with grant option;
grant select, delete on vault.secrets, vault.decrypted_secrets to postgres with grant option;
grant execute on function vault.create_secret, vault.update_secret, vault._crypto_aead_det_decrypt
  to postgres with grant option;
grant usage on schema vault to service_role;
grant select, delete on vault.secrets, vault.decrypted_secrets to service_role;
grant execute on function vault.create_secret, vault.update_secret, vault._crypto_aead_det_decrypt
  to service_role;

-- pg_cron exists only in the database cron.database_name names. supautils puts it in pg_catalog
-- whatever schema is asked for (supautils.conf.j2: extensions_parameter_overrides), and its
-- after-create script gives postgres the schema, the functions and the tables, but only SELECT
-- on cron.job (its rows change through cron.schedule and friends) and no TRIGGER on
-- cron.job_run_details (postgresql_extension_custom_scripts/pg_cron/after-create.sql;
-- migrations/db/migrations/20260730000000_revoke_trigger_on_cron_tables_from_postgres.sql).
do $$
begin
  if current_database() = current_setting('cron.database_name', true) then
    create extension if not exists pg_cron with schema pg_catalog;
    grant usage on schema cron to postgres with grant option;
    grant all on all functions in schema cron to postgres with grant option;
    alter default privileges for user supabase_admin in schema cron
      grant all on sequences to postgres with grant option;
    alter default privileges for user supabase_admin in schema cron
      grant all on tables to postgres with grant option;
    alter default privileges for user supabase_admin in schema cron
      grant all on functions to postgres with grant option;
    grant all privileges on all tables in schema cron to postgres with grant option;
    revoke all on table cron.job from postgres;
    grant select on table cron.job to postgres with grant option;
    revoke trigger on cron.job_run_details from postgres;
  end if;
end
$$;

-- What is in schema extensions is postgres's to use and to grant on
-- (20230224042246_grant_extensions_perms_for_postgres.sql:2-7).
grant all privileges on all tables in schema extensions to postgres with grant option;
grant all privileges on all routines in schema extensions to postgres with grant option;
grant all privileges on all sequences in schema extensions to postgres with grant option;
alter default privileges in schema extensions
  grant all on tables to postgres with grant option;
alter default privileges in schema extensions
  grant all on routines to postgres with grant option;
alter default privileges in schema extensions
  grant all on sequences to postgres with grant option;

-- Realtime streams the tables in this publication, created empty by the platform
-- (initial-schema.sql:5). That file runs as postgres (migrate.sh:41-45), so postgres owns the
-- publication and a project's migrations can add their tables to it.
do $$
begin
  if not exists (select from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end
$$;
alter publication supabase_realtime owner to postgres;

-- The supabase CLI records applied migrations here (supabase/cli pkg/migration/history.go); it
-- connects as postgres, so postgres makes and owns them.
set local role postgres;
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (version text primary key);
alter table supabase_migrations.schema_migrations add column if not exists statements text[];
alter table supabase_migrations.schema_migrations add column if not exists name text;
reset role;

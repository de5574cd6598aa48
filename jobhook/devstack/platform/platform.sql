-- The pieces of a Supabase database that its image and services create before any project
-- migration runs, mirrored for the dev stack with the same names, signatures and defaults.
-- Applied once per database by the dev stack (idempotent); never part of supabase/migrations.

-- Roles. Upstream: supabase/postgres migrations/db/init-scripts/00000000000000-initial-schema.sql
-- and supabase/postgres migrations/db/migrations/*_set_role_timeouts* (anon 3s, authenticated 8s).
do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    -- PostgREST logs in as authenticator and switches to one of the three per request.
    create role authenticator login noinherit;
  end if;
end
$$;
grant anon, authenticated, service_role to authenticator;
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';

grant usage on schema public to postgres, anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to postgres, anon, authenticated, service_role;

-- Extensions live in their own schema on Supabase; pgcrypto is enabled in every project.
-- Upstream: supabase/postgres migrations/db/init-scripts/00000000000000-initial-schema.sql
create schema if not exists extensions;
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
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

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

-- Vault is enabled in every Supabase project. Upstream: supabase/vault (the stand-in extension
-- is installed next to this file).
create extension if not exists supabase_vault;

-- Realtime streams the tables in this publication, created empty by the platform.
-- Upstream: supabase/postgres migrations/db/init-scripts/00000000000003-post-setup.sql
do $$
begin
  if not exists (select from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end
$$;

-- The supabase CLI records applied migrations here (supabase/cli pkg/migration/history.go).
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (version text primary key);
alter table supabase_migrations.schema_migrations add column if not exists statements text[];
alter table supabase_migrations.schema_migrations add column if not exists name text;

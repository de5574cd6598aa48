-- The roles of a hosted Supabase database, as its image leaves them before a project's first
-- migration; run by the bootstrap superuser at every start of the dev stack's cluster (idempotent).
-- Sources, all supabase/postgres: Dockerfile-15:209 (POSTGRES_USER=supabase_admin), and under
-- migrations/db/, migrate.sh, init-scripts/00000000000000-initial-schema.sql and
-- 00000000000003-post-setup.sql, and the migrations named below (migrations/*.sql).

-- supabase_admin is the bootstrap superuser (initdb -U supabase_admin); on hosted it owns what
-- the platform installs and nothing of a project's. initial-schema.sql:8, post-setup.sql:3.
alter role supabase_admin with superuser createdb createrole replication bypassrls;
alter role supabase_admin set search_path to "$user", public, auth, extensions;

-- The API roles PostgREST switches to, and the role it logs in as. initial-schema.sql:24-31;
-- 20221103090837_revoke_admin.sql:2 took supabase_admin back from authenticator, and
-- 20230529180330_alter_api_roles_for_inherit.sql:3-5 made the three inherit.
do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
  -- GoTrue's role, which owns the auth schema's tables and functions (auth-schema.sql:112).
  if not exists (select from pg_roles where rolname = 'supabase_auth_admin') then
    create role supabase_auth_admin noinherit createrole login noreplication;
  end if;
end
$$;
alter role anon inherit;
alter role authenticated inherit;
alter role service_role inherit;
grant anon, authenticated, service_role to authenticator;
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role supabase_auth_admin set search_path = auth;

-- postgres: created by the image as a superuser (migrate.sh:35-37), then demoted to these
-- attributes (10000000000000_demote-postgres.sql:17). It owns the database, so it owns schema
-- public (PostgreSQL 15: pg_database_owner) and may create there, as on hosted.
do $$
begin
  if not exists (select from pg_roles where rolname = 'postgres') then
    create role postgres;
  end if;
end
$$;
alter role postgres with nosuperuser createdb createrole login replication bypassrls;
alter role postgres set search_path to "$user", public, extensions;  -- post-setup.sql:4
alter database postgres owner to postgres;  -- migrate.sh:37
grant all on database postgres to postgres;  -- demote-postgres.sql:4
-- What hosted grants postgres in place of superuser:
-- 20230201083204_grant_auth_roles_to_postgres.sql:2, 20230306081037_grant_pg_monitor_to_postgres.sql:2,
-- 20240606060239_grant_predefined_roles_to_postgres.sql:2, and
-- 20251105172723_grant_pg_reload_conf_to_postgres.sql:2.
grant anon, authenticated, service_role to postgres;
grant pg_monitor to postgres;
grant pg_read_all_data, pg_signal_backend to postgres;
grant execute on function pg_catalog.pg_reload_conf() to postgres;

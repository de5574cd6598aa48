-- jobhook: the schema, its settings and the job type catalogue.
--
-- Runs unchanged on hosted Supabase and on the local dev stack. The extensions below ship with
-- Supabase (pgcrypto and Vault are enabled in every project; pg_net and pg_cron are available to
-- enable); the dev stack provides stand-ins with the same names, so nothing here branches.

create extension if not exists pgcrypto with schema extensions;
create extension if not exists pg_net with schema extensions;
create extension if not exists supabase_vault with schema vault;

create schema if not exists jobhook;
comment on schema jobhook is
  'jobhook internals: settings, job types, transitions and the sweep. Not exposed through the API.';

-- Functions are executable by PUBLIC unless revoked, and a per-schema ALTER DEFAULT PRIVILEGES
-- cannot take that global default back; so every function in this schema revokes PUBLIC
-- explicitly, and supabase/tests/05_privileges.sql checks that none was forgotten.

-- One row of knobs the operator may tune at run time (update jobhook.settings set ...).
create table jobhook.settings (
  singleton boolean primary key default true check (singleton),
  lease_seconds integer not null default 60
    check (lease_seconds between 5 and 3600),
  redispatch_after_seconds integer not null default 60
    check (redispatch_after_seconds between 5 and 86400),
  max_dispatches integer not null default 5
    check (max_dispatches between 1 and 1000),
  stuck_timeout_minutes integer not null default 15
    check (stuck_timeout_minutes between 1 and 10080),
  retention_days integer not null default 30
    check (retention_days between 1 and 3650),
  max_payload_bytes integer not null default 65536
    check (max_payload_bytes between 2 and 10485760),
  max_unfinished_per_user integer not null default 1000
    check (max_unfinished_per_user >= 1),
  -- A Modal cold start can outlast pg_net's 5 s default; the webhook answers 202 at once when warm.
  dispatch_timeout_ms integer not null default 10000
    check (dispatch_timeout_ms between 100 and 120000)
);
comment on table jobhook.settings is 'jobhook run-time settings: exactly one row.';
insert into jobhook.settings default values;

-- Synced from the Python handler registry (`jobhook types sync`); one row per job type.
create table jobhook.job_types (
  name text primary key
    constraint job_types_name_format check (name ~ '^[a-z][a-z0-9_]{0,62}$'),
  enabled boolean not null default true,
  max_attempts integer not null default 3
    check (max_attempts between 1 and 100),
  timeout_seconds integer not null default 300
    check (timeout_seconds between 1 and 86400),
  backoff_base_seconds double precision not null default 2
    check (backoff_base_seconds > 0),
  backoff_max_seconds double precision not null default 300
    check (backoff_max_seconds >= backoff_base_seconds),
  -- null: only the global jobhook.settings.max_unfinished_per_user applies
  max_unfinished_per_user integer
    check (max_unfinished_per_user >= 1),
  tier text not null default 'cpu'
    constraint job_types_tier_format check (tier ~ '^[a-z][a-z0-9_-]{0,31}$'),
  params_schema jsonb not null default '{}'
    check (jsonb_typeof(params_schema) = 'object'),
  description text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table jobhook.job_types is
  'Job types a client may enqueue. Synced from the handler registry; disable a type to refuse new jobs.';

-- The enqueue triggers run as the inserting role, so clients read the catalogue and the limits.
-- Neither holds anything secret, and PostgREST does not expose this schema.
grant usage on schema jobhook to authenticated, service_role;
grant select on jobhook.settings, jobhook.job_types to authenticated;
grant select, insert, update, delete on jobhook.settings, jobhook.job_types to service_role;

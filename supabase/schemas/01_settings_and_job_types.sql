-- The jobhook schema: its settings, the job type catalogue, and the rows its functions lock.

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
    check (dispatch_timeout_ms between 100 and 120000),
  -- pg_net is documented for about 200 requests a second; inserts beyond that share doorbells
  -- (04_doorbell.sql).
  max_doorbells_per_second integer not null default 200
    check (max_doorbells_per_second between 1 and 10000)
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
  updated_at timestamptz not null default now(),
  -- Deploys overlap: the old version's containers keep running while the new one starts. So a
  -- start does not disable the types it does not declare itself: each live deployment renews
  -- served_until for its own types every minute, and only a type that no deployment has renewed
  -- in time is disabled. Null: the type was written by hand (or by a test) and no deployment
  -- manages it.
  served_until timestamptz,
  -- null: no cap. Claims skip a user at the cap, and the job waits, pending, for a later claim,
  -- so one user's long jobs cannot take every slot of their type (05_claim.sql).
  max_running_per_user integer check (max_running_per_user >= 1)
);
comment on table jobhook.job_types is
  'Job types a client may enqueue. Synced from the handler registry; disable a type to refuse new jobs.';
comment on column jobhook.job_types.served_until is
  'Renewed by each live deployment for the types it runs; once past, the type is disabled.';
comment on column jobhook.job_types.max_running_per_user is
  'At most this many jobs of the type run for one user at a time; null: no cap.';
-- The database never holds a parameter schema it cannot check inserts against: the dev stack's
-- pg_jsonschema refuses, by name, every keyword it does not implement. Not validated against
-- the rows of older deployments, whose next `types sync` rewrites them.
alter table jobhook.job_types
  add constraint job_types_params_schema_checkable
  check (extensions.jsonschema_is_valid(params_schema::json)) not valid;

-- The enqueue triggers run as the inserting role, so clients read the catalogue and the limits.
-- Neither holds anything secret, and PostgREST does not expose this schema.
grant usage on schema jobhook to authenticated, service_role;
grant select on jobhook.settings, jobhook.job_types to authenticated;
grant select, insert, update, delete on jobhook.settings, jobhook.job_types to service_role;

-- Rows to serialize on, instead of advisory locks: advisory locks are open to every role, so any
-- client could take the sweep's key (every sweep would then answer "skipped") or a user's quota
-- key (that user's inserts would then wait forever). These tables are granted to no client role,
-- so only jobhook's own functions can lock their rows.
create table jobhook.locks (
  name text primary key,
  -- For the sweep: the newest request it saw in pg_net's queue, and when.
  queue_mark bigint,
  marked_at timestamptz,
  -- For the doorbell: when the last one was rung (jobhook.take_doorbell_turn).
  rung_at timestamptz
);
comment on table jobhook.locks is
  'Rows jobhook''s functions lock to serialize (the sweep, the doorbell''s pace); granted to no client role.';
insert into jobhook.locks (name) values ('sweep'), ('doorbell');

-- The quota lock is an upsert of the user's row, not a bare lock: under REPEATABLE READ a second
-- inserting transaction then fails to serialize (SQLSTATE 40001, retry) instead of counting with
-- a snapshot that misses the first one's jobs (jobhook.jobs_check_quota, 03_enqueue.sql).
create table jobhook.quota_locks (
  user_id uuid primary key,
  touched_at timestamptz not null default now()
);
comment on table jobhook.quota_locks is
  'One row per user that enqueued, upserted by each insert to serialize the quota check.';
-- Claims of a type with a running cap per user take the (type, user) row first, so that two at
-- once cannot both count the same running jobs and together pass the cap (jobhook.claim,
-- 05_claim.sql). The jobs without a user have the nil uuid.
create table jobhook.running_locks (
  job_type text not null,
  user_id uuid not null,
  touched_at timestamptz not null default now(),
  primary key (job_type, user_id)
);
comment on table jobhook.running_locks is
  'One row per capped job type and user, locked by claims to serialize the running cap.';
-- Supabase's default privileges reach only schema public; these say so explicitly all the same.
revoke all on jobhook.locks, jobhook.quota_locks, jobhook.running_locks
  from public, anon, authenticated;
-- The claims run as the runtime's role (service_role on a Supabase project).
grant select, insert, update on jobhook.running_locks to service_role;

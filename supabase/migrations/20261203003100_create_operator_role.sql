-- What the operators' dashboard (and /ready, and `jobhook doctor`) reads, and the role it reads as.
--
-- The app keeps its own role for the runtime; the dashboard and the health checks switch to
-- jobhook_operator for their queries (`set local role`, in the same message). Users' jobs stay
-- under row-level security: the role reads every job through a policy of its own, with nothing
-- but SELECT; its only writes are jobhook.retry and jobhook.cancel_for_operator (09_retry.sql),
-- which record who asked. What it must not read (Vault's decrypted secrets, pg_cron's rows of
-- other users) it learns through definer functions that answer only what the checks need.

do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'jobhook_operator') then
    create role jobhook_operator nologin noinherit;
  end if;
end;
$$;
comment on role jobhook_operator is
  'jobhook: what the dashboard and the health checks read as; reads jobs, pg_net''s tables, health.';
-- The app's role (the one that runs migrations, postgres on Supabase) switches to it per query.
grant jobhook_operator to current_user;

grant usage on schema jobhook to jobhook_operator;
grant select on public.jobs to jobhook_operator;
create policy jobs_select_operator on public.jobs
  for select to jobhook_operator
  using (true);
grant select on jobhook.settings, jobhook.job_types, jobhook.operator_actions to jobhook_operator;
-- pg_net grants its tables to PUBLIC already (04_doorbell.sql says why that matters); the
-- dashboard's reads are granted here all the same, so they hold if a platform takes that back.
grant usage on schema net to jobhook_operator;
grant select on net._http_response, net.http_request_queue to jobhook_operator;

-- The operators' jobs list, newest or oldest first, a page at a time by keyset
-- ((created_at, id) past the last row shown), per status: each status is one range of this
-- index, bounded by the page's time range, so a page never walks the table's history.
create index if not exists jobs_status_created_idx on public.jobs (status, created_at, id);

-- One page of that list. Read by a definer function, not through jobs_select_operator: under
-- any policy, even `using (true)`, PostgreSQL applies a condition whose operators are not
-- leakproof only after the policy, and the equality of enums is not leakproof, so the status
-- could never be the index's first column and every page sorted the status's whole history
-- (tests/test_dashboard_plans.py). The function returns the list's columns only, and only to
-- jobhook_operator; the filters are bound parameters, at most 1000 rows (a bulk action's selection).
create or replace function jobhook.operator_jobs(
  of_status public.job_status,
  of_type text,
  of_user uuid,
  since timestamptz,
  until timestamptz,
  error_contains text,
  after_at timestamptz,
  after_id uuid,
  newest boolean,
  max_rows integer
)
returns table (
  id uuid, user_id uuid, job_type text, status text, attempt integer, max_attempts integer,
  progress smallint, error text, created_at timestamptz, finished_at timestamptz,
  run_at timestamptz
)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  statuses public.job_status[] := case when operator_jobs.of_status is null
                                       then enum_range(null::public.job_status)
                                       else array[operator_jobs.of_status] end;
  page_size integer := least(greatest(operator_jobs.max_rows, 1), 1000);
begin
  if operator_jobs.newest then
    return query
      select p.* from unnest(statuses) s (status)
       cross join lateral (
             select j.id, j.user_id, j.job_type, j.status::text, j.attempt, j.max_attempts,
                    j.progress, j.error, j.created_at, j.finished_at, j.run_at
               from public.jobs j
              where j.status = s.status
                and j.created_at >= operator_jobs.since and j.created_at < operator_jobs.until
                and (j.created_at, j.id) < (operator_jobs.after_at, operator_jobs.after_id)
                and (operator_jobs.of_type is null or j.job_type = operator_jobs.of_type)
                and (operator_jobs.of_user is null or j.user_id = operator_jobs.of_user)
                and (operator_jobs.error_contains is null
                     or strpos(lower(j.error), lower(operator_jobs.error_contains)) > 0)
              order by j.created_at desc, j.id desc
              limit page_size) p
       order by p.created_at desc, p.id desc
       limit page_size;
  else
    return query
      select p.* from unnest(statuses) s (status)
       cross join lateral (
             select j.id, j.user_id, j.job_type, j.status::text, j.attempt, j.max_attempts,
                    j.progress, j.error, j.created_at, j.finished_at, j.run_at
               from public.jobs j
              where j.status = s.status
                and j.created_at >= operator_jobs.since and j.created_at < operator_jobs.until
                and (j.created_at, j.id) > (operator_jobs.after_at, operator_jobs.after_id)
                and (operator_jobs.of_type is null or j.job_type = operator_jobs.of_type)
                and (operator_jobs.of_user is null or j.user_id = operator_jobs.of_user)
                and (operator_jobs.error_contains is null
                     or strpos(lower(j.error), lower(operator_jobs.error_contains)) > 0)
              order by j.created_at, j.id
              limit page_size) p
       order by p.created_at, p.id
       limit page_size;
  end if;
end;
$$;

-- Which of the doorbell's Vault secrets exist, by name. Reads vault.secrets' names only: no
-- secret is decrypted, so the dashboard's role can be told without being able to read them.
create or replace function jobhook.vault_secrets_present()
returns text[]
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(array_agg(s.name order by s.name), '{}')
    from vault.secrets s
   where s.name in ('jobhook_webhook_url', 'jobhook_webhook_secret')
$$;

-- Whether the secret the database signs doorbells with is one the asking app verifies with,
-- given the SHA-256 (hex) of each of the app's secrets: only yes or no leaves the database.
-- Null when Vault holds no signing secret or no fingerprint is given.
create or replace function jobhook.signing_secret_accepted(fingerprints text[])
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select case when cardinality(fingerprints) > 0 then
           encode(extensions.digest(c.secret, 'sha256'), 'hex') = any(fingerprints)
         end
    from jobhook.webhook_config() c
$$;

-- The sweep's last runs, as pg_cron recorded them. pg_cron shows each user only the runs of
-- the jobs it scheduled (a row-level security policy on cron.job_run_details, username =
-- current_user), so this runs as the role that scheduled the sweep (08_schedule.sql). The runs
-- are read newest first by cron's primary key, `max_runs` of them, never the whole table:
-- pg_cron keeps every run until someone deletes them.
create or replace function jobhook.sweep_runs(max_runs integer default 30)
returns table (
  runid bigint, status text, return_message text, start_time timestamptz, end_time timestamptz
)
language sql
stable
security definer
set search_path = ''
as $$
  select d.runid, d.status, left(d.return_message, 1000), d.start_time, d.end_time
    from cron.job_run_details d
   where d.jobid = (select j.jobid from cron.job j where j.jobname = 'jobhook-sweep')
   order by d.runid desc
   limit least(greatest(max_runs, 1), 500)
$$;

-- Whether the sweep is scheduled and active: null when it is not scheduled at all.
create or replace function jobhook.sweep_scheduled()
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select j.active from cron.job j where j.jobname = 'jobhook-sweep'
$$;

revoke execute on function
  jobhook.operator_jobs(
    public.job_status, text, uuid, timestamptz, timestamptz, text, timestamptz, uuid, boolean,
    integer
  ),
  jobhook.vault_secrets_present(),
  jobhook.signing_secret_accepted(text[]),
  jobhook.sweep_runs(integer),
  jobhook.sweep_scheduled()
from public;
grant execute on function
  jobhook.operator_jobs(
    public.job_status, text, uuid, timestamptz, timestamptz, text, timestamptz, uuid, boolean,
    integer
  ),
  jobhook.vault_secrets_present(),
  jobhook.signing_secret_accepted(text[]),
  jobhook.sweep_runs(integer),
  jobhook.sweep_scheduled(),
  jobhook.foreign_queue_triggers(),
  jobhook.retry(uuid[], text),
  jobhook.cancel_for_operator(uuid[], text)
to jobhook_operator, service_role;

-- The migrations applied, where the supabase CLI records them (`health` compares them with the
-- files a deployment knows of).
grant usage on schema supabase_migrations to jobhook_operator;
grant select on supabase_migrations.schema_migrations to jobhook_operator;

-- What names its jobs by id (claim, complete_many, heartbeat, fail, cancel) finds them by primary
-- key, whatever the statistics say.
--
-- A queue's statistics are always out of date: ANALYZE saw a quiet table, then a burst brought
-- twenty thousand due jobs and two thousand started. Estimating the partial status indexes at a
-- row or two, the planner preferred them to the primary key and walked them end to end for one
-- job: a one-job claim read every due job in jobs_pending_run_at_idx (3.7 ms instead of 0.46 ms
-- with 20,000 waiting), and each heartbeat, completion and failure read every running job in
-- jobs_processing_idx, dead entries included until autovacuum came by. The cost of a call grew
-- with the backlog; tests/test_plans.py reproduces it. Now, in these functions:
--
-- * status is compared as text. No partial index's predicate (status = 'pending', ...) follows
--   from that, so the primary key is the only index that fits a lookup by id;
-- * sequential scans are off, so a plan made while the table was tiny cannot scan it whole once
--   it has grown (PL/pgSQL keeps its plans until the next ANALYZE); jit is off with them,
--   because the penalty that disabling adds to a plan's cost would otherwise set off JIT
--   compilation (145 ms per call, measured);
-- * plan_cache_mode is force_generic_plan: each statement is planned once per connection, as
--   20261125000100 intended, instead of again whenever PL/pgSQL weighs a custom plan;
-- * completions take their ids from the outcomes first, so the table is read by `id = any`
--   however the planner joins the rest.
--
-- These settings last for the call only, but hold for all it runs: a trigger on updates of
-- public.jobs added later would run under them too (none runs queries today).
--
-- Behaviour, signatures and privileges are unchanged (CREATE OR REPLACE keeps the grants).

create or replace function jobhook.claim(job_ids uuid[], worker_id text default null)
returns setof public.jobs
language plpgsql
set search_path = ''
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
begin
  return query
    update public.jobs j
       set status = 'processing',
           attempt = j.attempt + 1,
           started_at = now(),
           updated_at = now(),
           lease_expires_at = now() + make_interval(secs => s.lease_seconds),
           worker_id = claim.worker_id,
           progress = 0,
           progress_message = null,
           -- the doorbell was answered: count deliveries afresh for the next attempt
           dispatch_count = 0
      from jobhook.settings s
     where j.id = any (claim.job_ids)
       and j.status::text = 'pending'  -- as text: see the top of this file
       and j.run_at <= now()
       and j.cancel_requested_at is null
    returning j.*;
end;
$$;

create or replace function jobhook.complete_many(outcomes jsonb)
returns setof uuid
language plpgsql
set search_path = ''
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
begin
  return query
    update public.jobs j
       set status = 'completed',
           progress = 100,
           progress_message = coalesce(left(o.progress_message, 1000), j.progress_message),
           result = o.result,
           error = null,
           finished_at = now(),
           updated_at = now(),
           lease_expires_at = null
      from jsonb_to_recordset(complete_many.outcomes)
             as o (id uuid, attempt integer, result jsonb, progress_message text)
     where j.id = any (array(select (e ->> 'id')::uuid
                                from jsonb_array_elements(complete_many.outcomes) e))
       and j.id = o.id
       and j.attempt = o.attempt
       and j.status::text = 'processing'  -- as text: see the top of this file
    returning j.id;
end;
$$;

create or replace function jobhook.heartbeat(
  job_id uuid,
  attempt integer,
  progress integer default null,
  message text default null
)
returns table (cancel_requested boolean, lease_expires_at timestamptz)
language plpgsql
set search_path = ''
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
begin
  if heartbeat.progress is not null and heartbeat.progress not between 0 and 100 then
    raise exception 'progress must be between 0 and 100, got %', heartbeat.progress
      using errcode = '22023';
  end if;
  return query
    update public.jobs j
       set lease_expires_at = now() + make_interval(secs => s.lease_seconds),
           progress = coalesce(heartbeat.progress, j.progress),
           progress_message = coalesce(left(heartbeat.message, 1000), j.progress_message),
           updated_at = now()
      from jobhook.settings s
     where j.id = heartbeat.job_id
       and j.attempt = heartbeat.attempt
       and j.status::text = 'processing'  -- as text: see the top of this file
    returning j.cancel_requested_at is not null, j.lease_expires_at;
end;
$$;

create or replace function jobhook.fail(
  job_id uuid,
  attempt integer,
  message text,
  retryable boolean default true,
  kind text default 'error'
)
returns public.job_status
language plpgsql
set search_path = ''
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  new_status public.job_status;
  error_text text := left(coalesce(fail.message, 'unknown error'), 4000);
begin
  -- The row is locked first so its next status is decided on the version being updated.
  with decided as (
    select j.id,
           jobhook.status_after_failure(
             j.cancel_requested_at, fail.retryable, j.attempt, j.max_attempts) as status
      from public.jobs j
     where j.id = fail.job_id
       and j.attempt = fail.attempt
       and j.status::text = 'processing'  -- as text: see the top of this file
       for update
  )
  update public.jobs j
     set status = decided.status,
         run_at = case when decided.status = 'pending'
                       then now() + jobhook.backoff(j.job_type, j.attempt)
                       else j.run_at end,
         finished_at = case when decided.status = 'pending' then null else now() end,
         error = error_text,
         errors = j.errors || jobhook.error_entry(j.attempt, error_text, coalesce(fail.kind, 'error')),
         updated_at = now(),
         lease_expires_at = null,
         worker_id = null
    from decided
   where j.id = decided.id
  returning j.status into new_status;
  return new_status;
end;
$$;

create or replace function jobhook.cancel(job_id uuid, attempt integer default null)
returns public.job_status
language plpgsql
set search_path = ''
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  new_status public.job_status;
begin
  if cancel.attempt is null then
    update public.jobs j
       set cancel_requested_at = now()
     where j.id = cancel.job_id
       and j.status::text in ('pending', 'processing')  -- as text: see the top of this file
       and j.cancel_requested_at is null
    returning j.status into new_status;
  else
    update public.jobs j
       set status = 'cancelled',
           finished_at = now(),
           updated_at = now(),
           lease_expires_at = null
     where j.id = cancel.job_id
       and j.attempt = cancel.attempt
       and j.status::text = 'processing'  -- as text: see the top of this file
       and j.cancel_requested_at is not null
    returning j.status into new_status;
  end if;
  return new_status;
end;
$$;

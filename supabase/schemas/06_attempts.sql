-- The job state machine after claim: one function per transition, one statement each.
--
-- Every write after claim is conditional on (id, attempt, status = 'processing'): a runner whose
-- lease expired and whose job was retried by another runner matches no row and writes nothing.
-- These functions run as the caller and are executable by service_role (and the owner) only.
--
-- What names its jobs by id (claim, complete_many, heartbeat, fail, release, cancel) finds them
-- by primary key, whatever the statistics say.
--
-- A queue's statistics are always out of date: ANALYZE saw a quiet table, then a burst brought
-- twenty thousand due jobs and two thousand started. Estimating the partial status indexes at a
-- row or two, the planner would prefer them to the primary key and walk them end to end for one
-- job: a one-job claim read every due job in jobs_pending_run_at_idx (3.7 ms instead of 0.46 ms
-- with 20,000 waiting), and each heartbeat, completion and failure read every running job in
-- jobs_processing_idx, dead entries included until autovacuum came by. The cost of a call grew
-- with the backlog; tests/test_plans.py reproduces it. So, in these functions:
--
-- * status is compared as text. No partial index's predicate (status = 'pending', ...) follows
--   from that, so the primary key is the only index that fits a lookup by id;
-- * sequential scans are off, so a plan made while the table was tiny cannot scan it whole once
--   it has grown (PL/pgSQL keeps its plans until the next ANALYZE); jit is off with them,
--   because the penalty that disabling adds to a plan's cost would otherwise set off JIT
--   compilation (145 ms per call, measured);
-- * plan_cache_mode is force_generic_plan: each statement is planned once per connection, which
--   is why they are PL/pgSQL at all, instead of again whenever PL/pgSQL weighs a custom plan;
-- * completions take their ids from the outcomes first, so the table is read by `id = any`
--   however the planner joins the rest.
--
-- These settings last for the call only, but hold for all it runs: a trigger on updates of
-- public.jobs added later would run under them too (none runs queries today).
--
-- Why PL/pgSQL: a SQL-language function that cannot be inlined (any function with a SET clause,
-- as all of ours have to pin search_path) is parsed and planned again on every call. EXPLAIN
-- ANALYZE of the bare statements put planning at 0.16 ms for a one-row claim and 0.20 ms for a
-- one-row completion; timed from the client, PL/pgSQL saved 0.02 and 0.10 ms per call (see
-- docs/benchmarks.md). PL/pgSQL keeps each statement's plan for the life of the connection, and
-- the runtime's connections are pooled and long-lived.

-- The delay before retrying after `attempt` failed: exponential from the type's base, capped,
-- with equal jitter (half fixed, half random) so a burst of failures does not retry in lockstep.
create or replace function jobhook.backoff(job_type text, attempt integer)
returns interval
language sql
volatile
set search_path = ''
as $$
  select make_interval(secs =>
    least(coalesce(t.backoff_max_seconds, 300),
          coalesce(t.backoff_base_seconds, 2) * power(2, greatest(backoff.attempt - 1, 0)))
    * (0.5 + random() / 2))
    from (select 1) one
    left join jobhook.job_types t on t.name = backoff.job_type
$$;

-- Where a failed attempt leads: cancelled when the owner asked to cancel meanwhile, pending again
-- while it may be retried, failed otherwise. Shared by jobhook.fail and the sweep's lease rescue.
create or replace function jobhook.status_after_failure(
  cancel_requested_at timestamptz,
  retryable boolean,
  attempt integer,
  max_attempts integer
)
returns public.job_status
language sql
immutable
set search_path = ''
as $$
  select case
           when cancel_requested_at is not null then 'cancelled'
           when retryable and attempt < max_attempts then 'pending'
           else 'failed'
         end::public.job_status
$$;

-- Why an attempt did not complete: the `kind` of each entry of public.jobs.errors. Mirrored once
-- in Python by jobhook.jobs.FailureKind (tests/test_failure_kinds.py holds the two equal), whose
-- values say who records each.
create type jobhook.failure_kind as enum (
  'error', 'timeout', 'invalid_parameters', 'invalid_payload', 'unknown_job_type', 'bad_result',
  'released', 'lease_expired', 'undelivered', 'not_started', 'invalid_run_at'
);

-- One entry of `errors`, the append-only history of attempts that did not complete. The kind
-- is one of jobhook.failure_kind: any other is refused here, whoever writes it.
create or replace function jobhook.error_entry(attempt integer, message text, kind text)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_array(jsonb_build_object(
    'attempt', attempt, 'at', now(), 'message', message, 'kind', kind::jobhook.failure_kind
  ))
$$;

-- Extend the lease, optionally report progress. One row while the attempt is still this
-- runner's, telling whether the owner asked to cancel; no row when it no longer is.
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

-- processing -> completed for many attempts in one statement: each element of `outcomes` is
-- {"id", "attempt", "result", "progress_message"}, the result and the last progress message the
-- runner had not written yet. Returns the ids completed; an id missing from the answer was no
-- longer that attempt's (its lease expired and the job moved on) and is left untouched. A runner
-- finishing many short jobs writes them back together instead of one round trip each.
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

-- processing -> completed with the handler's result. False when the attempt is no longer ours.
create or replace function jobhook.complete(
  job_id uuid,
  attempt integer,
  result jsonb default null,
  progress_message text default null
)
returns boolean
language sql
set search_path = ''
as $$
  select exists (
    select from jobhook.complete_many(jsonb_build_array(jsonb_build_object(
      'id', job_id, 'attempt', attempt, 'result', result, 'progress_message', progress_message
    )))
  )
$$;

-- processing -> pending (retry after backoff) or failed (not retryable, or attempts exhausted),
-- or cancelled when the owner asked to cancel meanwhile. The error is appended to `errors`.
-- Returns the new status, or null when the attempt is no longer ours.
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

-- processing -> pending without spending an attempt: what a runner that is shutting down (every
-- deploy, Ctrl-C) does with the attempts it could not finish in its grace period.
--
-- The attempt fence stays: `attempt` is never decremented, so the next claim gets a new number
-- and a runner still holding the released one matches no row (the bug behind River #1302).
-- Instead the budget grows by one: max_attempts counts attempts allowed, releases included, so
-- `max_attempts - attempt` is what is left whatever was released. `errors` records the release
-- (kind 'released') beside the failures, so the owner sees why an attempt number was skipped.
-- The job is due at once (run_at = now, so the stuck rule counts from here) and not yet rung
-- (dispatched_at null): the next every-second dispatch of any live app rings for it.
--
-- Returns the status afterwards ('pending', or 'cancelled' when the owner asked to cancel in the
-- meantime), or null when the attempt is no longer this runner's.
create or replace function jobhook.release(
  job_id uuid,
  attempt integer,
  reason text default 'the runner shut down before the attempt finished'
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
  message text := 'released: ' || left(coalesce(release.reason, 'no reason given'), 1000);
begin
  update public.jobs j
     set status = case when j.cancel_requested_at is null then 'pending' else 'cancelled' end
                    ::public.job_status,
         max_attempts = j.max_attempts + 1,
         run_at = case when j.cancel_requested_at is null then now() else j.run_at end,
         finished_at = case when j.cancel_requested_at is null then null else now() end,
         dispatch_count = 0,
         dispatched_at = null,
         errors = j.errors || jobhook.error_entry(j.attempt, message, 'released'),
         updated_at = now(),
         lease_expires_at = null,
         worker_id = null
   where j.id = release.job_id
     and j.attempt = release.attempt
     -- as text, so no partial index fits and the lookup stays on the primary key
     and j.status::text = 'processing'
  returning j.status into new_status;
  return new_status;
end;
$$;

-- A cancel request from the owner (supabase-js `update({cancel_requested_at: ...})`) or from
-- jobhook.cancel: a pending job is cancelled at once; a processing job keeps running until its
-- runner sees the flag on its next heartbeat. The request's time is the server's, and it cannot
-- be withdrawn.
create or replace function jobhook.jobs_on_cancel_request()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.cancel_requested_at is not null then
    raise exception 'job % already has a cancel request from %; it cannot be withdrawn or changed',
      old.id, old.cancel_requested_at
      using errcode = '22023';
  end if;
  new.cancel_requested_at := now();
  new.updated_at := now();
  if old.status = 'pending' then
    new.status := 'cancelled';
    new.finished_at := now();
  end if;
  return new;
end;
$$;

create trigger jobs_on_cancel_request
  before update of cancel_requested_at on public.jobs
  for each row
  when (new.cancel_requested_at is distinct from old.cancel_requested_at)
  execute function jobhook.jobs_on_cancel_request();

-- Without attempt: a cancel request (pending -> cancelled now, processing -> flagged).
-- With attempt: the runner acknowledging that it stopped a flagged job (processing -> cancelled).
-- Returns the job's status afterwards, or null when there was nothing to cancel.
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

revoke execute on function
  jobhook.backoff(text, integer),
  jobhook.status_after_failure(timestamptz, boolean, integer, integer),
  jobhook.error_entry(integer, text, text),
  jobhook.heartbeat(uuid, integer, integer, text),
  jobhook.complete_many(jsonb),
  jobhook.complete(uuid, integer, jsonb, text),
  jobhook.fail(uuid, integer, text, boolean, text),
  jobhook.release(uuid, integer, text),
  jobhook.jobs_on_cancel_request(),
  jobhook.cancel(uuid, integer)
from public;
grant execute on function
  jobhook.backoff(text, integer),
  jobhook.status_after_failure(timestamptz, boolean, integer, integer),
  jobhook.error_entry(integer, text, text),
  jobhook.heartbeat(uuid, integer, integer, text),
  jobhook.complete_many(jsonb),
  jobhook.complete(uuid, integer, jsonb, text),
  jobhook.fail(uuid, integer, text, boolean, text),
  jobhook.release(uuid, integer, text),
  jobhook.cancel(uuid, integer)
to service_role;

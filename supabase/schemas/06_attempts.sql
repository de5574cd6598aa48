-- The job state machine after claim: one function per transition, one statement each.
--
-- Every write after claim is conditional on (id, attempt, status = 'processing'): a runner whose
-- lease expired and whose job was retried by another runner matches no row and writes nothing.
-- These functions run as the caller and are executable by service_role (and the owner) only.
--
-- Every attempt ends through jobhook.finish_attempts, the one statement that writes what each
-- end (completed, failed, released, cancelled) leaves on the row; complete, complete_many, fail,
-- release, acknowledge_cancel and the sweep's lease rescue only say which attempts end and how.
--
-- What names its jobs by id (claim, heartbeat, finish_attempts and its callers, request_cancel)
-- finds them by primary key, whatever the statistics say.
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
-- while it may be retried, failed otherwise: a failed end in jobhook.finish_attempts.
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

-- How an attempt ended, as the runner (or the sweep) reports it.
--   completed: the handler returned; the job is completed with its result.
--   failed:    it raised, timed out or lost its lease; the job is retried after backoff while
--              attempts last and the error is retryable, failed otherwise.
--   released:  a runner shutting down handed it back unspent (jobhook.release explains).
--   cancelled: the runner stopped it because the owner asked to cancel.
-- Whatever the end, a job whose owner asked to cancel meanwhile becomes cancelled rather than
-- pending again.
create type jobhook.attempt_end as enum ('completed', 'failed', 'released', 'cancelled');

-- One attempt to finish: the fence (job_id, attempt), how it ended, and what to record. The
-- fields an end does not use are null.
create type jobhook.finished_attempt as (
  job_id uuid,
  attempt integer,
  ended jobhook.attempt_end,
  result jsonb,             -- completed: the handler's result
  progress_message text,    -- completed: the last progress message not yet written
  message text,             -- failed, released: the message of the entry appended to `errors`
  retryable boolean,        -- failed: whether another attempt may follow
  kind text                 -- failed, released: the entry's jobhook.failure_kind
);

-- The one way an attempt ends: processing -> completed, pending, failed or cancelled, for many
-- attempts in one statement. complete, complete_many, fail, release, acknowledge_cancel and the
-- sweep's lease rescue all end their attempts here, so what each end writes is decided in this
-- one place. Each attempt is fenced on (id, attempt, status = 'processing'), and a cancelled end
-- also on the owner's request; returns the jobs it finished and their status afterwards. A job
-- missing from the answer is not that attempt's any more (the lease expired and the job moved
-- on, or it never was) and is left untouched.
--
-- The status afterwards is computed in the SET clause, from the version of the row being
-- updated: an owner's cancel request that commits while this statement waits for the row is
-- seen (PostgreSQL evaluates the assignments again on the newest version), so no pre-lock is
-- needed. Ids come from the attempts first, so the table is read by `id = any` however the
-- planner joins the rest.
create or replace function jobhook.finish_attempts(attempts jobhook.finished_attempt[])
returns table (job_id uuid, status public.job_status)
language plpgsql
set search_path = ''
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
begin
  return query
    update public.jobs j
       set (status, run_at, finished_at) = (
             select decided.status,
                    case when decided.status <> 'pending' then j.run_at
                         when a.ended = 'released' then now()  -- due at once, nothing spent
                         else now() + jobhook.backoff(j.job_type, j.attempt)
                    end,
                    case when decided.status = 'pending' then null else now() end
               from (select case a.ended
                              when 'completed' then 'completed'
                              when 'cancelled' then 'cancelled'
                              when 'released' then
                                case when j.cancel_requested_at is null then 'pending'
                                     else 'cancelled' end::public.job_status
                              else jobhook.status_after_failure(
                                     j.cancel_requested_at, a.retryable, j.attempt, j.max_attempts)
                            end::public.job_status as status) decided),
           progress = case when a.ended = 'completed' then 100 else j.progress end,
           progress_message = case when a.ended = 'completed'
                                   then coalesce(left(a.progress_message, 1000), j.progress_message)
                                   else j.progress_message end,
           result = case when a.ended = 'completed' then a.result else j.result end,
           error = case a.ended when 'completed' then null
                                when 'failed' then a.message
                                else j.error end,
           errors = case when a.ended in ('failed', 'released')
                         then j.errors || jobhook.error_entry(j.attempt, a.message, a.kind)
                         else j.errors end,
           -- A released attempt costs nothing: the budget grows by one, and the job waits for a
           -- new doorbell of its own.
           max_attempts = case when a.ended = 'released' then j.max_attempts + 1
                               else j.max_attempts end,
           dispatch_count = case when a.ended = 'released' then 0 else j.dispatch_count end,
           dispatched_at = case when a.ended = 'released' then null else j.dispatched_at end,
           -- The runner that finished a job stays on the row; one handed back or failed does not.
           worker_id = case when a.ended in ('failed', 'released') then null
                            else j.worker_id end,
           updated_at = now(),
           lease_expires_at = null
      from unnest(finish_attempts.attempts) a
     where j.id = any (array(select f.job_id from unnest(finish_attempts.attempts) f))
       and j.id = a.job_id
       and j.attempt = a.attempt
       and j.status::text = 'processing'  -- as text: see the top of this file
       and (a.ended <> 'cancelled' or j.cancel_requested_at is not null)
    returning j.id, j.status;
end;
$$;

-- processing -> completed for many attempts in one statement: each element of `outcomes` is
-- {"id", "attempt", "result", "progress_message"}, the result and the last progress message the
-- runner had not written yet. Returns the ids completed; an id missing from the answer was no
-- longer that attempt's and is left untouched. A runner finishing many short jobs writes them
-- back together instead of one round trip each.
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
    select f.job_id
      from jobhook.finish_attempts(array(
             select row(o.id, o.attempt, 'completed', o.result, o.progress_message,
                        null, null, null)::jobhook.finished_attempt
               from jsonb_to_recordset(complete_many.outcomes)
                      as o (id uuid, attempt integer, result jsonb, progress_message text))) f;
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
    select from jobhook.finish_attempts(array[row(
      job_id, attempt, 'completed', result, progress_message, null, null, null
    )::jobhook.finished_attempt])
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
declare
  new_status public.job_status;
begin
  select f.status into new_status
    from jobhook.finish_attempts(array[row(
           fail.job_id, fail.attempt, 'failed', null, null,
           left(coalesce(fail.message, 'unknown error'), 4000), fail.retryable,
           coalesce(fail.kind, 'error')
         )::jobhook.finished_attempt]) f;
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
declare
  new_status public.job_status;
begin
  select f.status into new_status
    from jobhook.finish_attempts(array[row(
           release.job_id, release.attempt, 'released', null, null,
           'released: ' || left(coalesce(release.reason, 'no reason given'), 1000), null,
           'released'
         )::jobhook.finished_attempt]) f;
  return new_status;
end;
$$;

-- A cancel request from the owner (supabase-js `update({cancel_requested_at: ...})`) or from
-- jobhook.request_cancel: a pending job is cancelled at once; a processing job keeps running
-- until its runner sees the flag on its next heartbeat. The request's time is the server's, and
-- it cannot be withdrawn.
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

-- Ask to cancel, as the owner's update does (jobs_on_cancel_request above): a pending job is
-- cancelled now, a processing one is flagged for its runner. Returns the job's status
-- afterwards, or null when there was nothing to cancel (no such job, finished, or asked already).
create or replace function jobhook.request_cancel(job_id uuid)
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
  update public.jobs j
     set cancel_requested_at = now()
   where j.id = request_cancel.job_id
     and j.status::text in ('pending', 'processing')  -- as text: see the top of this file
     and j.cancel_requested_at is null
  returning j.status into new_status;
  return new_status;
end;
$$;

-- processing -> cancelled: the runner acknowledging that it stopped an attempt whose owner asked
-- to cancel. Returns 'cancelled', or null when the attempt is no longer this runner's or no
-- cancel was requested.
create or replace function jobhook.acknowledge_cancel(job_id uuid, attempt integer)
returns public.job_status
language plpgsql
set search_path = ''
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
  new_status public.job_status;
begin
  select f.status into new_status
    from jobhook.finish_attempts(array[row(
           acknowledge_cancel.job_id, acknowledge_cancel.attempt, 'cancelled',
           null, null, null, null, null
         )::jobhook.finished_attempt]) f;
  return new_status;
end;
$$;

-- The two cancel transitions under the one name clients have called since the start: without
-- attempt, jobhook.request_cancel; with it, jobhook.acknowledge_cancel.
create or replace function jobhook.cancel(job_id uuid, attempt integer default null)
returns public.job_status
language sql
set search_path = ''
as $$
  select case when attempt is null then jobhook.request_cancel(job_id)
              else jobhook.acknowledge_cancel(job_id, attempt) end
$$;

revoke execute on function
  jobhook.backoff(text, integer),
  jobhook.status_after_failure(timestamptz, boolean, integer, integer),
  jobhook.error_entry(integer, text, text),
  jobhook.heartbeat(uuid, integer, integer, text),
  jobhook.finish_attempts(jobhook.finished_attempt[]),
  jobhook.complete_many(jsonb),
  jobhook.complete(uuid, integer, jsonb, text),
  jobhook.fail(uuid, integer, text, boolean, text),
  jobhook.release(uuid, integer, text),
  jobhook.jobs_on_cancel_request(),
  jobhook.request_cancel(uuid),
  jobhook.acknowledge_cancel(uuid, integer),
  jobhook.cancel(uuid, integer)
from public;
grant execute on function
  jobhook.backoff(text, integer),
  jobhook.status_after_failure(timestamptz, boolean, integer, integer),
  jobhook.error_entry(integer, text, text),
  jobhook.heartbeat(uuid, integer, integer, text),
  jobhook.finish_attempts(jobhook.finished_attempt[]),
  jobhook.complete_many(jsonb),
  jobhook.complete(uuid, integer, jsonb, text),
  jobhook.fail(uuid, integer, text, boolean, text),
  jobhook.release(uuid, integer, text),
  jobhook.request_cancel(uuid),
  jobhook.acknowledge_cancel(uuid, integer),
  jobhook.cancel(uuid, integer)
to service_role;

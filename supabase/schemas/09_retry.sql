-- Operators' actions on jobs: retry and cancel, each recorded with who asked.
--
-- Final states are final, except for an explicit retry by an operator. A retry moves a failed
-- or cancelled job back to pending in place: the same row, the same id, its history kept. It
-- never resets `attempt`: every write after a claim names (id, attempt), so a runner of an old
-- attempt that is somehow still alive matches no row once the retried job is claimed again
-- (attempt + 1). Instead the budget grows: max_attempts becomes at least attempt + 1, so the
-- job has one attempt left whatever it had spent, and `errors` keeps every earlier attempt.

-- Who did what to which job, and at which attempt: one row per job an action touched. The
-- dashboard writes it through the functions below, in the statement that makes the change.
create table jobhook.operator_actions (
  id bigint generated always as identity primary key,
  at timestamptz not null default now(),
  actor text not null
    constraint operator_actions_actor_length check (length(actor) between 1 and 200),
  action text not null
    constraint operator_actions_action check (action in ('retry', 'cancel')),
  job_id uuid not null,
  attempt integer not null
);
comment on table jobhook.operator_actions is
  'Retries and cancels by operators (the dashboard), with who asked. Kept when the job is pruned.';
create index operator_actions_job_idx on jobhook.operator_actions (job_id, at);
revoke all on jobhook.operator_actions from public, anon, authenticated;
grant select on jobhook.operator_actions to service_role;

-- A retried job's cancel request belongs to the attempt it stopped; the new attempt starts
-- without one. The retry cannot clear it itself: jobs_on_cancel_request refuses to withdraw a
-- request, and it fires whenever an update names cancel_requested_at. This trigger fires only
-- for the move from a final state back to pending, which nothing but jobhook.retry makes
-- (clients may update cancel_requested_at alone; the runtime's transitions start from pending
-- or processing).
create or replace function jobhook.jobs_on_retry()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.cancel_requested_at := null;
  return new;
end;
$$;

create trigger jobs_on_retry
  before update of status on public.jobs
  for each row
  when (old.status in ('failed', 'cancelled') and new.status = 'pending')
  execute function jobhook.jobs_on_retry();

-- Retry failed or cancelled jobs in place; return the ids retried (the others were not final,
-- or not failed or cancelled, and are left alone). Due at once and not yet rung
-- (dispatched_at null): the next every-second dispatch of any live app rings for them, as for
-- a released job. Security definer: operators read jobs through jobhook_operator, which may not
-- write them; this function is the one write it is given. Found by primary key, as every
-- transition that names its jobs (see the top of 06_attempts.sql).
create or replace function jobhook.retry(job_ids uuid[], actor text)
returns setof uuid
language plpgsql
security definer
set search_path = ''
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
begin
  if retry.actor is null or length(btrim(retry.actor)) = 0 then
    raise exception 'jobhook.retry needs who asked (actor)' using errcode = '22023';
  end if;
  if cardinality(retry.job_ids) > 1000 then
    raise exception 'jobhook.retry takes at most 1000 jobs at a time, not %',
      cardinality(retry.job_ids)
      using errcode = '22023';
  end if;
  return query
    with retried as (
      update public.jobs j
         set status = 'pending',
             max_attempts = greatest(j.max_attempts, j.attempt + 1),
             run_at = now(),
             finished_at = null,
             progress = 0,
             progress_message = null,
             result = null,
             dispatch_count = 0,
             dispatched_at = null,
             lease_expires_at = null,
             worker_id = null,
             updated_at = now()
       where j.id = any(retry.job_ids)
         and j.status::text in ('failed', 'cancelled')  -- as text: see 06_attempts.sql
      returning j.id, j.attempt
    ),
    recorded as (
      insert into jobhook.operator_actions (actor, action, job_id, attempt)
      select left(retry.actor, 200), 'retry', r.id, r.attempt from retried r
    )
    select r.id from retried r;
end;
$$;

-- Cancel pending or running jobs for an operator: a pending job is cancelled at once, a running
-- one is flagged and stops at its next heartbeat (jobs_on_cancel_request, 06_attempts.sql), as
-- when its owner asks. Returns the ids it asked to cancel.
create or replace function jobhook.cancel_for_operator(job_ids uuid[], actor text)
returns setof uuid
language plpgsql
security definer
set search_path = ''
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
begin
  if cancel_for_operator.actor is null or length(btrim(cancel_for_operator.actor)) = 0 then
    raise exception 'jobhook.cancel_for_operator needs who asked (actor)' using errcode = '22023';
  end if;
  if cardinality(cancel_for_operator.job_ids) > 1000 then
    raise exception 'jobhook.cancel_for_operator takes at most 1000 jobs at a time, not %',
      cardinality(cancel_for_operator.job_ids)
      using errcode = '22023';
  end if;
  return query
    with cancelled as (
      update public.jobs j
         set cancel_requested_at = now()
       where j.id = any(cancel_for_operator.job_ids)
         and j.status::text in ('pending', 'processing')  -- as text: see 06_attempts.sql
         and j.cancel_requested_at is null
      returning j.id, j.attempt
    ),
    recorded as (
      insert into jobhook.operator_actions (actor, action, job_id, attempt)
      select left(cancel_for_operator.actor, 200), 'cancel', c.id, c.attempt from cancelled c
    )
    select c.id from cancelled c;
end;
$$;

revoke execute on function
  jobhook.jobs_on_retry(),
  jobhook.retry(uuid[], text),
  jobhook.cancel_for_operator(uuid[], text)
from public;
grant execute on function
  jobhook.retry(uuid[], text),
  jobhook.cancel_for_operator(uuid[], text)
to service_role;

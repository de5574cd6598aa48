-- Every attempt ends through one statement, jobhook.finish_attempts: complete, complete_many,
-- fail, release, the acknowledgement of a cancel and the sweep's lease rescue now share it, each
-- still fenced on (id, attempt, status). jobhook.cancel's two transitions get names of their own
-- (request_cancel, acknowledge_cancel) and cancel stays, calling them. The sweep fails pending
-- jobs that will not start (undelivered, not started in time) in one statement instead of two.
-- Behaviour is unchanged: every function keeps its name, arguments and answers.

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

-- One pass of recovery, scheduled every minute by pg_cron (08_schedule.sql); safe to call at
-- any time and from several places at once (a second concurrent call returns
-- {"skipped": true}: it finds the 'sweep' row of jobhook.locks locked). Each step is one
-- set-based statement over a partial index, so its cost follows the number of live jobs.
--
-- Deliveries count only when pg_net attempted them. While pg_net's worker is not sending
-- (requests the previous sweep saw in its queue are still there a redispatch interval later), a
-- re-ring would only queue behind them: the sweep then neither rings lost jobs again nor fails
-- them as undelivered, and a job that times out waiting says why.
create or replace function jobhook.sweep()
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  s jobhook.settings;
  mark jobhook.locks;
  stalled boolean;
  waiting bigint;
  rescued integer;
  undelivered integer;
  not_started integer;
  dispatched integer;
  pruned integer;
  history_pruned integer;
begin
  select * into mark from jobhook.locks l where l.name = 'sweep' for update skip locked;
  if not found then
    return jsonb_build_object('skipped', true);
  end if;
  select * into s from jobhook.settings;

  -- pg_net's worker takes its queue oldest first, about every second: a request that an
  -- earlier sweep saw queued and that is still there half a redispatch interval later means
  -- that nothing is sending. (The queue has no timestamps; the mark stands in for them. Half,
  -- so that the sweep a minute later, pg_cron's pace, is always late enough to judge.)
  stalled := coalesce(mark.marked_at <= now() - make_interval(secs => s.redispatch_after_seconds / 2.0),
                      false)
             and exists (select from net.http_request_queue q where q.id <= mark.queue_mark);
  if stalled then
    select count(*) into waiting from net.http_request_queue;
  end if;
  if mark.marked_at is null
     or mark.marked_at <= now() - make_interval(secs => s.redispatch_after_seconds / 2.0) then
    update jobhook.locks l
       set queue_mark = (select max(q.id) from net.http_request_queue q), marked_at = now()
     where l.name = 'sweep';
  end if;

  -- 1. Expired leases: the runner stopped heartbeating (killed, or cut off from the database).
  -- The attempt ends as a retryable failure, through the path every attempt ends by.
  select count(*) into rescued
    from jobhook.finish_attempts(array(
           select row(j.id, j.attempt, 'failed', null, null,
                      'lease expired: the runner stopped heartbeating during attempt ' || j.attempt
                        || ' (worker ' || coalesce(j.worker_id, 'unknown') || ')',
                      true, 'lease_expired')::jobhook.finished_attempt
             from public.jobs j
            where j.status = 'processing'
              and j.lease_expires_at < now()
              for update skip locked));

  -- 2. Pending jobs that will not start by themselves, failed saying why, in one pass over the
  -- due ones:
  -- * undelivered: rung max_dispatches times without a runner claiming them, the last ring long
  --   enough ago: the endpoint is down or refusing. Not while pg_net is not sending, when those
  --   deliveries may never have left the database.
  -- * not_started: due for longer than stuck_timeout_minutes, with the reason pg_net gives, if
  --   it gives one.
  -- A job that is both counts as undelivered. A job waiting for its user's running cap was
  -- delivered; it waits its turn.
  with given_up as (
    select p.id, p.kind, p.dispatch_count
      from (select j.id, j.job_type, j.user_id, j.dispatch_count,
                   case when not stalled
                             and j.dispatch_count >= s.max_dispatches
                             and j.dispatched_at < now() - make_interval(secs => s.redispatch_after_seconds)
                        then 'undelivered'
                        when j.run_at < now() - make_interval(mins => s.stuck_timeout_minutes)
                        then 'not_started'
                   end as kind
              from public.jobs j
             where j.status = 'pending'
               and j.run_at <= now()) p
     where p.kind is not null
       and coalesce(jobhook.room_for_user(p.job_type, p.user_id), 1) > 0
       for update skip locked
  ), failed as (
    update public.jobs j
       set status = 'failed',
           finished_at = now(),
           error = said.message,
           errors = j.errors || jobhook.error_entry(j.attempt, said.message, given_up.kind),
           updated_at = now()
      from given_up
     cross join lateral (
           select case given_up.kind
                    when 'undelivered' then
                      'not picked up after ' || given_up.dispatch_count || ' deliveries of the '
                        || 'webhook; check that the endpoint is up (net._http_response has the '
                        || 'replies)'
                    else
                      'not started within ' || s.stuck_timeout_minutes || ' minutes of being due'
                        || case when stalled
                                then ': pg_net has sent nothing for over '
                                     || s.redispatch_after_seconds || ' s and ' || waiting
                                     || ' request(s) wait in its queue; check that its worker'
                                     || ' is running (select net.check_worker_is_up())'
                                else ' (' || given_up.dispatch_count || ' deliveries)'
                           end
                  end as message) said
     where j.id = given_up.id
    returning given_up.kind
  )
  select count(*) filter (where failed.kind = 'undelivered'),
         count(*) filter (where failed.kind = 'not_started')
    into undelivered, not_started
    from failed;

  -- 3. Ring again what is due and was never rung since (delayed jobs, retries after backoff) or,
  -- while pg_net sends, whose last ring is old enough to count as lost.
  dispatched := jobhook.dispatch_due(include_lost => not stalled);

  -- 4. Retention, in a bounded batch so one run never holds locks for long; the next run
  -- continues where this one stopped.
  with old as (
    select j.id
      from public.jobs j
     where j.status in ('completed', 'failed', 'cancelled')
       and j.finished_at < now() - make_interval(days => s.retention_days)
     order by j.finished_at
     limit 10000
       for update skip locked
  )
  delete from public.jobs j
   using old
   where j.id = old.id;
  get diagnostics pruned = row_count;

  -- 5. pg_cron keeps a row per run forever (cron.job_run_details): prune the sweep's own, as
  -- jobs are pruned. Its policy lets the job's owner delete them.
  delete from cron.job_run_details d
   where d.jobid in (select c.jobid from cron.job c where c.jobname = 'jobhook-sweep')
     and d.end_time < now() - make_interval(days => s.retention_days);
  get diagnostics history_pruned = row_count;

  return jsonb_build_object(
    'rescued', rescued,
    'failed_undelivered', undelivered,
    'failed_not_started', not_started,
    'dispatched', dispatched,
    'pruned', pruned,
    'history_pruned', history_pruned,
    'deliveries_stalled', stalled
  );
end;
$$;

revoke execute on function
  jobhook.finish_attempts(jobhook.finished_attempt[]),
  jobhook.request_cancel(uuid),
  jobhook.acknowledge_cancel(uuid, integer)
from public;
grant execute on function
  jobhook.finish_attempts(jobhook.finished_attempt[]),
  jobhook.request_cancel(uuid),
  jobhook.acknowledge_cancel(uuid, integer)
to service_role;

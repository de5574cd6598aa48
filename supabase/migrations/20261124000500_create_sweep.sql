-- Recovery: prompt dispatch of jobs that become due, and the sweep that rescues what was lost.
--
-- The webhook is a doorbell, not a delivery guarantee (pg_net sends once, without retries), and
-- a runner can die mid-job. Nothing here trusts a job's age alone: a running job is rescued only
-- when its lease has expired, and a pending job is re-dispatched only when its last delivery is
-- old enough to count as lost.

-- Ring the doorbell for due pending jobs not dispatched since they became due: delayed jobs
-- whose run_at has come and retries whose backoff has passed. The runtime calls this every second
-- so they start promptly. With include_lost (the sweep), jobs whose last delivery is older than
-- redispatch_after_seconds are rung again too: their doorbell was lost. All go out together, 500
-- per request. Returns the number of jobs rung.
create function jobhook.dispatch_due(include_lost boolean default false, max_jobs integer default 50000)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  picked uuid[];
  due jsonb;
  lost_before timestamptz;
  max_dispatches integer;
begin
  -- Settings read into variables rather than joined: the planner then sees the job rows alone.
  select now() - make_interval(secs => s.redispatch_after_seconds), s.max_dispatches
    into lost_before, max_dispatches
    from jobhook.settings s;

  -- Pick and lock; skip locked: a job another session is claiming or dispatching right now is
  -- not due here. Two queries, not one with an OR on include_lost: the every-second call must
  -- stay on the small jobs_due_idx, whose size is the number of jobs waiting for a first ring.
  if include_lost then
    picked := array(
      select j.id
        from public.jobs j
       where j.status = 'pending'
         and j.run_at <= now()
         and j.cancel_requested_at is null
         and (j.dispatched_at is null
              or j.dispatched_at < j.run_at
              or (j.dispatched_at < lost_before and j.dispatch_count < max_dispatches))
       order by j.run_at
       limit max_jobs
         for update skip locked);
  else
    picked := array(
      select j.id
        from public.jobs j
       where j.status = 'pending'
         and (j.dispatched_at is null or j.dispatched_at < j.run_at)
         and j.run_at <= now()
         and j.cancel_requested_at is null
       order by j.run_at
       limit max_jobs
         for update skip locked);
  end if;
  if cardinality(picked) = 0 then
    return 0;
  end if;
  -- Without the Vault secrets nothing can be sent: mark nothing, so no job counts a delivery
  -- that never happened (and none is failed as undeliverable for it). Read only when there is
  -- something to send: decrypting is the costly part of an idle call.
  if (select c.url is null or c.secret is null from jobhook.webhook_config() c) then
    return 0;
  end if;

  with marked as (
    update public.jobs j
       set dispatch_count = j.dispatch_count + 1,
           dispatched_at = now()
     where j.id = any (picked)
    returning j.id, j.job_type, j.run_at
  )
  select jsonb_agg(jsonb_build_object('id', m.id, 'job_type', m.job_type) order by m.run_at)
    into due
    from marked m;
  perform jobhook.dispatch(due);
  return coalesce(jsonb_array_length(due), 0);
end;
$$;

-- One pass of recovery, scheduled every minute by pg_cron; safe to call at any time and from
-- several places at once (a second concurrent call returns {"skipped": true}). Each step is one
-- set-based statement over a partial index, so its cost follows the number of live jobs.
create function jobhook.sweep()
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  s jobhook.settings;
  rescued integer;
  undelivered integer;
  not_started integer;
  dispatched integer;
  pruned integer;
begin
  if not pg_try_advisory_xact_lock(hashtext('jobhook.sweep')) then
    return jsonb_build_object('skipped', true);
  end if;
  select * into s from jobhook.settings;

  -- 1. Expired leases: the runner stopped heartbeating (killed, or cut off from the database).
  -- The attempt counts as failed and is retried like any retryable failure.
  with expired as (
    select j.id,
           jobhook.status_after_failure(j.cancel_requested_at, true, j.attempt, j.max_attempts)
             as status,
           'lease expired: the runner stopped heartbeating during attempt ' || j.attempt
             || ' (worker ' || coalesce(j.worker_id, 'unknown') || ')' as message
      from public.jobs j
     where j.status = 'processing'
       and j.lease_expires_at < now()
       for update skip locked
  )
  update public.jobs j
     set status = expired.status,
         run_at = case when expired.status = 'pending'
                       then now() + jobhook.backoff(j.job_type, j.attempt)
                       else j.run_at end,
         finished_at = case when expired.status = 'pending' then null else now() end,
         error = expired.message,
         errors = j.errors || jobhook.error_entry(j.attempt, expired.message, 'lease_expired'),
         updated_at = now(),
         lease_expires_at = null,
         worker_id = null
    from expired
   where j.id = expired.id;
  get diagnostics rescued = row_count;

  -- 2. Pending jobs delivered max_dispatches times without a runner claiming them: the endpoint
  -- is down or refusing. Fail them with the reason rather than ring forever.
  with given_up as (
    select j.id,
           'not picked up after ' || j.dispatch_count || ' deliveries of the webhook; '
             || 'check that the endpoint is up (net._http_response has the replies)' as message
      from public.jobs j
     where j.status = 'pending'
       and j.run_at <= now()
       and j.dispatch_count >= s.max_dispatches
       and j.dispatched_at < now() - make_interval(secs => s.redispatch_after_seconds)
       for update skip locked
  )
  update public.jobs j
     set status = 'failed',
         finished_at = now(),
         error = given_up.message,
         errors = j.errors || jobhook.error_entry(j.attempt, given_up.message, 'undelivered'),
         updated_at = now()
    from given_up
   where j.id = given_up.id;
  get diagnostics undelivered = row_count;

  -- 3. Pending jobs due for longer than stuck_timeout_minutes without starting.
  with stale as (
    select j.id,
           'not started within ' || s.stuck_timeout_minutes || ' minutes of being due ('
             || j.dispatch_count || ' deliveries)' as message
      from public.jobs j
     where j.status = 'pending'
       and j.run_at < now() - make_interval(mins => s.stuck_timeout_minutes)
       for update skip locked
  )
  update public.jobs j
     set status = 'failed',
         finished_at = now(),
         error = stale.message,
         errors = j.errors || jobhook.error_entry(j.attempt, stale.message, 'not_started'),
         updated_at = now()
    from stale
   where j.id = stale.id;
  get diagnostics not_started = row_count;

  -- 4. Ring again what is due and was never rung since (delayed jobs, retries after backoff) or
  -- whose last ring is old enough to count as lost.
  dispatched := jobhook.dispatch_due(include_lost => true);

  -- 5. Retention, in a bounded batch so one run never holds locks for long; the next run
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

  return jsonb_build_object(
    'rescued', rescued,
    'failed_undelivered', undelivered,
    'failed_not_started', not_started,
    'dispatched', dispatched,
    'pruned', pruned
  );
end;
$$;

revoke execute on function jobhook.dispatch_due(boolean, integer), jobhook.sweep() from public;
grant execute on function jobhook.dispatch_due(boolean, integer), jobhook.sweep() to service_role;

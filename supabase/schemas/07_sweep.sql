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
--
-- With none of those, it rings once for jobs due for over a second and still pending: inserts
-- that shared a doorbell (04_doorbell.sql) whose drain ran dry before they committed, or whose
-- ringer rolled back; users waiting for their running cap; a backlog the runners have no room
-- for. That ring counts no delivery (nothing says one was lost); one call rings at most once, and
-- the runtime calls it once a second.
create or replace function jobhook.dispatch_due(include_lost boolean default false, max_jobs integer default 50000)
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
    select jsonb_agg(jsonb_build_object('id', w.id, 'job_type', w.job_type) order by w.run_at)
      into due
      from (select j.id, j.job_type, j.run_at
              from public.jobs j
             where j.status = 'pending'
               and j.run_at <= now() - interval '1 second'
               and j.cancel_requested_at is null
             order by j.run_at
             limit 100) w;
    -- Not when a doorbell rang within the second: its drain is at work. The doorbell's last
    -- committed ring, read without its lock: should a transaction hold the turn and stall (an
    -- insert in a long transaction), inserts do not ring meanwhile, and this still does.
    if due is not null and (select l.rung_at is null or l.rung_at < clock_timestamp() - interval '1 second'
                              from jobhook.locks l where l.name = 'doorbell') then
      perform jobhook.dispatch(due);
    end if;
    return 0;
  end if;
  -- Without the Vault secrets, or with a URL pg_net would refuse, nothing can be sent: mark
  -- nothing, so no job counts a delivery that never happened (and none is failed as
  -- undeliverable for it). Read only when there is something to send: decrypting is the
  -- costly part of an idle call.
  if (select c.secret is null or jobhook.webhook_url_problem(c.url) is not null
        from jobhook.webhook_config() c) then
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

revoke execute on function jobhook.dispatch_due(boolean, integer), jobhook.sweep() from public;
grant execute on function jobhook.dispatch_due(boolean, integer), jobhook.sweep() to service_role;

-- Review fixes to fairness and the stall check.
--
-- * Two claims at once could both count a user's running jobs before either committed and
--   together pass the type's running cap: claims of capped types now take the (type, user) row
--   of jobhook.running_locks first, in a statement of their own.
-- * A job waiting for its user's cap was rung again each redispatch interval and then failed
--   "not picked up after N deliveries" (or "not started within N minutes"): the sweep leaves
--   such jobs to wait their turn.
-- * The stall check compared the previous sweep's mark against a full redispatch interval, and
--   pg_cron's minute is that interval at the defaults: a sweep a moment early judged nothing.
--   It compares against half the interval now.

create table jobhook.running_locks (
  job_type text not null,
  user_id uuid not null,
  touched_at timestamptz not null default now(),
  primary key (job_type, user_id)
);
comment on table jobhook.running_locks is
  'One row per capped job type and user, locked by claims to serialize the running cap.';
revoke all on jobhook.running_locks from public, anon, authenticated;
-- The claims run as the runtime's role (service_role on a Supabase project).
grant select, insert, update on jobhook.running_locks to service_role;

create or replace function jobhook.claim(job_ids uuid[], worker_id text default null)
returns setof public.jobs
language plpgsql
set search_path = ''
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
begin
  -- Capped types: take each (type, user) row in one order (no deadlock between claims), in a
  -- statement of its own, so the update below counts running jobs with a snapshot taken after
  -- any other claim for the same user committed.
  insert into jobhook.running_locks as r (job_type, user_id)
  select distinct j.job_type, coalesce(j.user_id, '00000000-0000-0000-0000-000000000000')
    from public.jobs j
    join jobhook.job_types t on t.name = j.job_type
   where j.id = any (claim.job_ids)
     and t.max_running_per_user is not null
   order by 1, 2
  on conflict (job_type, user_id) do update set touched_at = now();

  return query
    with locked as materialized (
      select l.id, l.job_type, l.user_id, l.run_at
        from public.jobs l
       where l.id = any (claim.job_ids)
         -- as text, so no partial index fits and the lookup stays on the primary key
         and l.status::text = 'pending'
         for update of l skip locked
    ),
    capped as materialized (
      -- Only for types with a cap: one probe of the running index per user and type here
      -- (materialized: inlined into the join below, it would probe again for every row).
      select k.job_type, k.user_id, jobhook.room_for_user(k.job_type, k.user_id) as room
        from (select distinct c.job_type, c.user_id
                from locked c
                join jobhook.job_types t on t.name = c.job_type
               where t.max_running_per_user is not null) k
    ),
    picked as (
      select r.id
        from (select l.id, l.job_type, l.user_id,
                     row_number() over (partition by l.job_type, l.user_id order by l.run_at) as n
                from locked l) r
        left join capped c on c.job_type = r.job_type and c.user_id is not distinct from r.user_id
       where c.room is null or r.n <= c.room
    )
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
      from jobhook.settings s, picked
     where j.id = picked.id
       and j.run_at <= now()
       and j.cancel_requested_at is null
    returning j.*;
end;
$$;

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
  -- is down or refusing. Fail them with the reason rather than ring forever; not while pg_net
  -- is not sending, when those deliveries may never have left the database.
  with given_up as (
    select j.id,
           'not picked up after ' || j.dispatch_count || ' deliveries of the webhook; '
             || 'check that the endpoint is up (net._http_response has the replies)' as message
      from public.jobs j
     where not stalled
       and j.status = 'pending'
       and j.run_at <= now()
       and j.dispatch_count >= s.max_dispatches
       and j.dispatched_at < now() - make_interval(secs => s.redispatch_after_seconds)
       -- a job waiting for its user's running cap was delivered; it waits its turn
       and coalesce(jobhook.room_for_user(j.job_type, j.user_id), 1) > 0
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

  -- 3. Pending jobs due for longer than stuck_timeout_minutes without starting, with the reason
  -- pg_net gives, if it gives one.
  with stale as (
    select j.id,
           'not started within ' || s.stuck_timeout_minutes || ' minutes of being due'
             || case when stalled
                     then ': pg_net has sent nothing for over ' || s.redispatch_after_seconds
                          || ' s and ' || waiting || ' request(s) wait in its queue; check'
                          || ' that its worker is running (select net.check_worker_is_up())'
                     else ' (' || j.dispatch_count || ' deliveries)'
                end as message
      from public.jobs j
     where j.status = 'pending'
       and j.run_at < now() - make_interval(mins => s.stuck_timeout_minutes)
       and coalesce(jobhook.room_for_user(j.job_type, j.user_id), 1) > 0
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

  -- 4. Ring again what is due and was never rung since (delayed jobs, retries after backoff) or,
  -- while pg_net sends, whose last ring is old enough to count as lost.
  dispatched := jobhook.dispatch_due(include_lost => not stalled);

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

  -- 6. pg_cron keeps a row per run forever (cron.job_run_details): prune the sweep's own, as
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

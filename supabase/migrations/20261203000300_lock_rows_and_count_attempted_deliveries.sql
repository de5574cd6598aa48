-- Serialize on rows no client can lock, count only deliveries pg_net attempted, prune jobhook's
-- own pg_cron history, and claim around rows someone else holds.
--
-- * Advisory locks are open to every role: any client could take the sweep's key (every sweep
--   then answered "skipped") or a user's quota key (that user's inserts then waited forever).
--   jobhook.locks and jobhook.quota_locks are granted to no client role, so only jobhook's
--   own functions can lock their rows.
-- * The quota lock is an upsert of the user's row, not a bare lock: under REPEATABLE READ a
--   second inserting transaction then fails to serialize (SQLSTATE 40001, retry) instead of
--   counting with a snapshot that misses the first one's jobs.
-- * While pg_net's worker is not sending (requests the previous sweep saw in its queue are still
--   there a redispatch interval later), a re-ring would only queue behind them: the sweep
--   neither rings lost jobs again nor fails them as undelivered, and a job that times out
--   waiting says why.

create table jobhook.locks (
  name text primary key,
  -- For the sweep: the newest request it saw in pg_net's queue, and when.
  queue_mark bigint,
  marked_at timestamptz
);
comment on table jobhook.locks is
  'Rows jobhook''s functions lock to serialize (the sweep); granted to no client role.';
insert into jobhook.locks (name) values ('sweep');

create table jobhook.quota_locks (
  user_id uuid primary key,
  touched_at timestamptz not null default now()
);
comment on table jobhook.quota_locks is
  'One row per user that enqueued, upserted by each insert to serialize the quota check.';
-- Supabase's default privileges reach only schema public; these say so explicitly all the same.
revoke all on jobhook.locks, jobhook.quota_locks from public, anon, authenticated;

-- Statement trigger: the per-user quota on unfinished jobs. Security definer, to write the
-- user's row in jobhook.quota_locks; the role that inserted is read from the `role` setting
-- (what SET ROLE and PostgREST set), since current_user here is the function's owner.
create or replace function jobhook.jobs_check_quota()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  uid uuid := auth.uid();
  inserting_role text := case current_setting('role')
                           when 'none' then session_user::text
                           else current_setting('role')
                         end;
  global_limit integer;
  unfinished bigint;
  over record;
begin
  -- Roles that bypass RLS (service_role, postgres) are trusted backends; the quota guards the
  -- API.
  if exists (
    select from pg_catalog.pg_roles
     where rolname = inserting_role and (rolsuper or rolbypassrls)
  ) or uid is null then
    return null;
  end if;

  -- Concurrent inserts by one user cannot see each other's uncommitted rows: they queue here,
  -- per user, until the first commits; the count below then sees its jobs.
  insert into jobhook.quota_locks as q (user_id) values (uid)
  on conflict (user_id) do update set touched_at = now();

  select s.max_unfinished_per_user into global_limit from jobhook.settings s;
  select count(*) into unfinished
    from public.jobs j
   where j.user_id = uid and j.status in ('pending', 'processing');
  if unfinished > global_limit then
    raise exception 'too many unfinished jobs: % pending or processing, the limit is %',
      unfinished, global_limit
      using errcode = 'PT429',
            hint = 'wait for some to finish or cancel them, then retry';
  end if;

  select t.name, t.max_unfinished_per_user as job_limit, count(*) as unfinished into over
    from public.jobs j
    join jobhook.job_types t on t.name = j.job_type
   where j.user_id = uid
     and j.status in ('pending', 'processing')
     and t.max_unfinished_per_user is not null
     and j.job_type in (select i.job_type from inserted i)
   group by t.name, t.max_unfinished_per_user
  having count(*) > t.max_unfinished_per_user
   limit 1;
  if found then
    raise exception 'too many unfinished "%" jobs: % pending or processing, the limit is %',
      over.name, over.unfinished, over.job_limit
      using errcode = 'PT429',
            hint = 'wait for some to finish or cancel them, then retry';
  end if;
  return null;
end;
$$;

-- pending -> processing for each id that is still pending, due and not cancelled, skipping rows
-- another session holds locked (a client's open `select ... for update` on its own job must not
-- hold up the claimer that serves every user): a skipped id stays pending for a later claim.
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
      from jobhook.settings s,
           (select l.id
              from public.jobs l
             where l.id = any (claim.job_ids)
               -- as text, so no partial index fits and the lookup stays on the primary key
               and l.status::text = 'pending'
               for update of l skip locked) picked
     where j.id = picked.id
       and j.run_at <= now()
       and j.cancel_requested_at is null
    returning j.*;
end;
$$;

-- One pass of recovery, scheduled every minute by pg_cron; safe to call at any time and from
-- several places at once (a second concurrent call returns {"skipped": true}). Each step is one
-- set-based statement over a partial index, so its cost follows the number of live jobs.
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
  -- earlier sweep saw queued and that is still there a redispatch interval later means that
  -- nothing is sending. (The queue has no timestamps; the mark stands in for them.)
  stalled := coalesce(mark.marked_at <= now() - make_interval(secs => s.redispatch_after_seconds),
                      false)
             and exists (select from net.http_request_queue q where q.id <= mark.queue_mark);
  if stalled then
    select count(*) into waiting from net.http_request_queue;
  end if;
  if mark.marked_at is null
     or mark.marked_at <= now() - make_interval(secs => s.redispatch_after_seconds) then
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

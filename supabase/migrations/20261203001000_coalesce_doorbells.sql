-- Coalesced doorbells: under load, inserts share doorbells, at most
-- settings.max_doorbells_per_second of them (pg_net's documented pace is about 200 a second),
-- and runners drain what is due instead of claiming only the ids a ring names.

alter table jobhook.settings
  add column max_doorbells_per_second integer not null default 200
    check (max_doorbells_per_second between 1 and 10000);

create sequence if not exists jobhook.shared_doorbells;
comment on sequence jobhook.shared_doorbells is
  'Inserts whose jobs a doorbell rung by another announced; runners drain when it moves.';
revoke all on sequence jobhook.shared_doorbells from public, anon, authenticated;
grant select on sequence jobhook.shared_doorbells to service_role;

alter table jobhook.locks add column rung_at timestamptz;
comment on table jobhook.locks is
  'Rows jobhook''s functions lock to serialize (the sweep, the doorbell''s pace); granted to no client role.';
insert into jobhook.locks (name) values ('doorbell') on conflict (name) do nothing;

-- Whether this transaction may ring now: when the last doorbell is at least 1 /
-- max_doorbells_per_second old. The turn is a row lock taken with SKIP LOCKED, so an insert
-- never waits for another: while one transaction holds the turn (it rang and has not committed
-- yet), the others do not ring, and their jobs are announced by its ring, or, should it roll
-- back, by the every-second jobhook.dispatch_due.
create or replace function jobhook.take_doorbell_turn()
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  last_rung timestamptz;
  per_second integer;
begin
  select l.rung_at into last_rung
    from jobhook.locks l
   where l.name = 'doorbell'
     for update skip locked;
  if not found then
    return false;
  end if;
  select s.max_doorbells_per_second into per_second from jobhook.settings s;
  if last_rung > clock_timestamp() - make_interval(secs => 1.0 / per_second) then
    return false;
  end if;
  update jobhook.locks l set rung_at = clock_timestamp() where l.name = 'doorbell';
  return true;
end;
$$;

revoke execute on function jobhook.take_doorbell_turn() from public;

-- Statement trigger: one doorbell for all due rows of the statement (the row trigger in
-- 03_enqueue.sql marked them), unless another insert holds the doorbell's turn. Security
-- definer because it reads Vault, which clients must never see.
create or replace function jobhook.jobs_dispatch()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  due jsonb := (select jsonb_agg(jsonb_build_object('id', i.id, 'job_type', i.job_type))
                  from inserted i
                 where i.dispatch_count > 0);
begin
  if due is null then
    return null;
  end if;
  if not jobhook.take_doorbell_turn() then
    -- Announced by the doorbell another insert rang (or rings), or by dispatch_due.
    perform nextval('jobhook.shared_doorbells');
    return null;
  end if;
  if jobhook.dispatch(due) = 0 then
    -- Nothing went out (Vault is not configured): take back the marks the row trigger made,
    -- so these jobs count as never delivered rather than as delivered and ignored.
    update public.jobs j
       set dispatch_count = 0, dispatched_at = null
     where j.id in (select (d ->> 'id')::uuid from jsonb_array_elements(due) d);
  end if;
  return null;
end;
$$;

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

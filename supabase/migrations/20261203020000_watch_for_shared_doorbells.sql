-- Runners that have run dry keep watching jobhook.shared_doorbells for a moment and list their
-- job types in jobhook.drains meanwhile; inserts of those types count themselves instead of
-- ringing. The doorbell's turn reads its time before it locks.

-- Whether this transaction may ring now: when the last doorbell is at least 1 /
-- max_doorbells_per_second old. The turn is a row lock taken with SKIP LOCKED, so an insert
-- never waits for another: while one transaction holds the turn (it rang and has not committed
-- yet), the others do not ring, and their jobs are announced by its ring, or, should it roll
-- back, by the every-second jobhook.dispatch_due. The time is read without the lock first: a
-- row lock is a write (WAL, a dirty page), and most inserts under load need only the read.
create or replace function jobhook.take_doorbell_turn()
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  last_rung timestamptz;
  per_second integer;
  pace interval;
begin
  select s.max_doorbells_per_second into per_second from jobhook.settings s;
  pace := make_interval(secs => 1.0 / per_second);
  select l.rung_at into last_rung from jobhook.locks l where l.name = 'doorbell';
  if last_rung > clock_timestamp() - pace then
    return false;
  end if;
  select l.rung_at into last_rung
    from jobhook.locks l
   where l.name = 'doorbell'
     for update skip locked;
  if not found or last_rung > clock_timestamp() - pace then
    return false;
  end if;
  update jobhook.locks l set rung_at = clock_timestamp() where l.name = 'doorbell';
  return true;
end;
$$;

-- Drains that keep watching: a runner that has run dry goes on reading
-- jobhook.shared_doorbells every few milliseconds for a short while (the runtime's
-- JOBHOOK_DRAIN_LINGER_MS) and claims as soon as it moves. It lists its job types here until
-- when it will watch, and an insert of those types then counts itself instead of ringing: a
-- steady stream of single inserts costs a sequence step each, not a signed request through
-- pg_net and the app. When it stops watching it takes its rows back (jobhook.stop_draining)
-- and claims once more; should it die instead, its rows lapse by themselves within the linger.
-- A job whose count the watcher missed (its insert committed after the last look) is rung for by
-- jobhook.dispatch_due a second later, as any job that shared a doorbell.
create table if not exists jobhook.drains (
  job_type text primary key,
  watching_until timestamptz not null
);
comment on table jobhook.drains is
  'Job types a runner watches jobhook.shared_doorbells for, and until when: their inserts do not ring.';
alter table jobhook.drains enable row level security;
revoke all on jobhook.drains from public, anon, authenticated;

-- Watch for `job_types` for `linger_ms` more (a later time another runner set stays): until
-- when this runner now watches, and the count of shared doorbells so far.
create or replace function jobhook.keep_draining(
  job_types text[], linger_ms integer, out watching_until timestamptz, out shared_doorbells bigint
)
language plpgsql
security definer
set search_path = ''
as $$
begin
  if linger_ms is null or linger_ms < 1 or linger_ms > 10000 then
    raise exception 'linger_ms must be between 1 and 10000, got %', linger_ms
      using errcode = '22023';
  end if;
  watching_until := clock_timestamp() + make_interval(secs => linger_ms / 1000.0);
  insert into jobhook.drains as d (job_type, watching_until)
  select distinct t, keep_draining.watching_until
    from unnest(job_types) as t
   where t is not null
  on conflict (job_type) do update
    set watching_until = greatest(d.watching_until, excluded.watching_until);
  shared_doorbells := (select s.last_value from jobhook.shared_doorbells s);
end;
$$;

-- Stop watching for `job_types`: their inserts ring again, unless another runner still watches.
-- Only a time no later than this runner's own is taken back.
create or replace function jobhook.stop_draining(job_types text[], watched_until timestamptz)
returns void
language sql
security definer
set search_path = ''
as $$
  update jobhook.drains d
     set watching_until = clock_timestamp()
   where d.job_type = any (job_types)
     and d.watching_until <= watched_until
$$;

revoke execute on function
  jobhook.keep_draining(text[], integer),
  jobhook.stop_draining(text[], timestamptz)
from public;
grant execute on function
  jobhook.keep_draining(text[], integer),
  jobhook.stop_draining(text[], timestamptz)
to service_role;

-- Statement trigger: one doorbell for all due rows of the statement (the row trigger in
-- 03_enqueue.sql marked them), unless a runner watches for all their types or another insert
-- holds the doorbell's turn. Security definer because it reads Vault, which clients must never
-- see.
create or replace function jobhook.jobs_dispatch()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  due jsonb;
  due_types text[];
begin
  select jsonb_agg(jsonb_build_object('id', i.id, 'job_type', i.job_type)),
         array_agg(distinct i.job_type)
    into due, due_types
    from inserted i
   where i.dispatch_count > 0;
  if due is null then
    return null;
  end if;
  if not exists (
       select from unnest(due_types) as t
        where not exists (select from jobhook.drains d
                           where d.job_type = t and d.watching_until > clock_timestamp())
     )
     or not jobhook.take_doorbell_turn() then
    -- Announced by a watching runner, by the doorbell another insert rang (or rings), or by
    -- dispatch_due.
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

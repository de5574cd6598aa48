-- pending -> processing: the claims, fair across users.
--
-- Without fairness one user's long jobs, however many, would take every slot of their type, and
-- other users' jobs of that type would fail "not started within N minutes". So:
--
-- * A job type may cap how many of its jobs one user has running (max_running_per_user, null:
--   no cap); claims skip a user at the cap, and the job waits, pending, for a later claim.
-- * claim_due serves users in turn: from a random point in the order of user ids it takes each
--   user's oldest due job, one per user, and only then, if room is left, more of theirs. Every
--   step is a probe of jobs_pending_by_user_idx, so a claim costs what it takes (max_jobs
--   jobs, the users it visits), never a walk of the backlog.
--
-- jobhook.claim finds its rows by id, by primary key, whatever the statistics say, with the
-- same SET clauses as the transitions that follow it and for the same reasons (explained at the
-- top of 06_attempts.sql).

-- How many more jobs of `job_type` may start for `user_id` now; null when the type has no cap.
-- PL/pgSQL, as every probe here: a SQL function with a SET clause is planned again on every
-- call (06_attempts.sql, at the top), and claim_due calls these once per user it visits. With the
-- claims' settings of its own: the sweep calls it too, and PL/pgSQL keeps the plan the first
-- caller's settings made.
create or replace function jobhook.room_for_user(job_type text, user_id uuid)
returns integer
language plpgsql
stable
set search_path = ''
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
  cap integer;
  running integer;
begin
  select t.max_running_per_user into cap
    from jobhook.job_types t
   where t.name = room_for_user.job_type;
  if cap is null then
    return null;
  end if;
  -- Two counts, for the same reason as oldest_due's two queries below: each one an index
  -- condition on jobs_processing_by_user_idx.
  if room_for_user.user_id is null then
    select count(*) into running
      from public.jobs j
     where j.job_type = room_for_user.job_type
       and j.user_id is null
       and j.status = 'processing';
  else
    select count(*) into running
      from public.jobs j
     where j.job_type = room_for_user.job_type
       and j.user_id = room_for_user.user_id
       and j.status = 'processing';
  end if;
  return greatest(cap - running, 0);
end;
$$;

-- pending -> processing for each id that is still pending, due and not cancelled, skipping rows
-- another session holds locked (a client's open `select ... for update` on its own job must not
-- hold up the claimer that serves every user) and users at their type's running cap (the oldest
-- of their ids first, up to the room they have): a skipped id stays pending for a later claim.
-- Returns the claimed rows (attempt already incremented); ids missing from the result were not
-- claimed.
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

-- The first user id after `after` (from the start when null) with a job of `job_type` waiting:
-- one probe of jobs_pending_by_user_idx.
create or replace function jobhook.next_waiting_user(job_type text, after uuid)
returns uuid
language plpgsql
stable
set search_path = ''
as $$
begin
  return (
    select j.user_id
      from public.jobs j
     where j.status = 'pending'
       and j.job_type = next_waiting_user.job_type
       and j.user_id > coalesce(next_waiting_user.after, '00000000-0000-0000-0000-000000000000')
     order by j.user_id
     limit 1);
end;
$$;

-- The oldest `how_many` due jobs of one user (null: the jobs without a user) and type, locked,
-- skipping rows another session holds. Two queries: `user_id is not distinct from` cannot be an
-- index condition, and the planner would walk jobs_pending_run_at_idx, the whole backlog of the
-- type, for the one user's job.
create or replace function jobhook.oldest_due(job_type text, user_id uuid, how_many integer)
returns setof uuid
language plpgsql
set search_path = ''
as $$
begin
  if oldest_due.user_id is null then
    return query
      select j.id
        from public.jobs j
       where j.status = 'pending'
         and j.job_type = oldest_due.job_type
         and j.user_id is null
         and j.run_at <= now()
         and j.cancel_requested_at is null
       order by j.run_at
       limit greatest(oldest_due.how_many, 0)
         for update skip locked;
  else
    return query
      select j.id
        from public.jobs j
       where j.status = 'pending'
         and j.job_type = oldest_due.job_type
         and j.user_id = oldest_due.user_id
         and j.run_at <= now()
         and j.cancel_requested_at is null
       order by j.run_at
       limit greatest(oldest_due.how_many, 0)
         for update skip locked;
  end if;
end;
$$;

-- pending -> processing for up to max_jobs due jobs of the given types, users served in turn
-- (see the top of this file), whichever doorbell announced them. A runner whose line was full
-- turned some doorbells away; once it has room it takes that work from the table with this
-- instead of waiting for doorbells, or for the sweep, which would ring again only after
-- redispatch_after_seconds. Rows another session holds are skipped, and a job announced to
-- another runner as well is claimed by one of them only (claim's own guard).
create or replace function jobhook.claim_due(job_types text[], max_jobs integer, worker_id text default null)
returns setof public.jobs
language plpgsql
set search_path = ''
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
  -- A random point in the order of user ids: each call starts its turns somewhere else, so no
  -- user is always first.
  start uuid := gen_random_uuid();
  job_type text;
  -- Whether any of the types caps its running jobs per user; per type, in the walk.
  any_capped boolean;
  capped boolean;
  -- False once the one-owner path below has picked: no turns to take.
  walk boolean := true;
  visitor uuid;
  wrapped boolean;
  picked uuid[] := '{}';
  served jsonb := '[]';  -- {job_type, user_id, capped} of every visit that took a job
  visit jsonb;
  taken uuid[];
  share integer;
  want integer;
begin
  if max_jobs is null or max_jobs < 1 then
    raise exception 'max_jobs must be at least 1, got %', coalesce(max_jobs::text, 'null')
      using errcode = '22023';
  end if;
  any_capped := exists (select from jobhook.job_types t
                         where t.name = any (claim_due.job_types)
                           and t.max_running_per_user is not null);

  -- One type without a cap, and one owner waiting (one user, or only jobs without a user):
  -- the turns would serve that owner alone, oldest first. A few probes instead of the walk.
  if cardinality(claim_due.job_types) = 1 and not any_capped then
    job_type := claim_due.job_types[1];
    visitor := jobhook.next_waiting_user(job_type, null);
    if visitor is null
       or (jobhook.next_waiting_user(job_type, visitor) is null
           and not exists (select from public.jobs j
                            where j.status = 'pending'
                              and j.job_type = claim_due.job_types[1]
                              and j.user_id is null)) then
      picked := array(select jobhook.oldest_due(job_type, visitor, max_jobs));
      walk := false;
    end if;
  end if;

  -- Turn one: the oldest due job of each user, users from `start` on, wrapping once; then the
  -- jobs no user owns, as one more user. Each visit is two probes of jobs_pending_by_user_idx
  -- (the next user, the user's oldest due job), and one of the running index for a capped type.
  <<types>>
  foreach job_type in array job_types loop
    exit when not walk;
    capped := any_capped and exists (select from jobhook.job_types t
                                      where t.name = job_type
                                        and t.max_running_per_user is not null);
    wrapped := false;
    visitor := jobhook.next_waiting_user(job_type, start);
    loop
      if visitor is null then
        exit when wrapped;
        wrapped := true;
        visitor := jobhook.next_waiting_user(job_type, null);
        continue;
      end if;
      exit when wrapped and visitor >= start;
      exit types when cardinality(picked) >= max_jobs;
      taken := array(select jobhook.oldest_due(
                 job_type, visitor,
                 case when capped then least(coalesce(jobhook.room_for_user(job_type, visitor), 1), 1)
                      else 1 end));
      if cardinality(taken) > 0 then
        picked := picked || taken;
        served := served || jsonb_build_object('job_type', job_type, 'user_id', visitor,
                                               'capped', capped);
      end if;
      visitor := jobhook.next_waiting_user(job_type, visitor);
    end loop;
    if cardinality(picked) < max_jobs then
      taken := array(select jobhook.oldest_due(job_type, null, 1));
      if cardinality(taken) > 0 then
        picked := picked || taken;
        served := served || jsonb_build_object('job_type', job_type, 'user_id', null,
                                               'capped', capped);
      end if;
    end if;
  end loop;

  -- Then the room left, shared among those served, each within their cap.
  if cardinality(picked) < max_jobs and jsonb_array_length(served) > 0 then
    share := ceil((max_jobs - cardinality(picked))::numeric / jsonb_array_length(served));
    for visit in select v from jsonb_array_elements(served) v loop
      exit when cardinality(picked) >= max_jobs;
      want := least(share, max_jobs - cardinality(picked),
                    case when (visit ->> 'capped')::boolean
                         then coalesce(jobhook.room_for_user(visit ->> 'job_type',
                                                             (visit ->> 'user_id')::uuid) - 1, share)
                         else share end);
      -- The user's oldest is the one turn one took (still pending, locked by this call): ask
      -- for one more and leave it out.
      taken := array(
        select o.id
          from jobhook.oldest_due(visit ->> 'job_type', (visit ->> 'user_id')::uuid, want + 1)
                 as o (id)
         where o.id <> all (picked)
         limit greatest(want, 0));
      picked := picked || taken;
    end loop;
  end if;

  if any_capped then
    return query select * from jobhook.claim(picked, claim_due.worker_id);
    return;
  end if;
  -- claim's update, without what it does for caps (no type here has one). The ids were found
  -- and locked by statements of their own: the update's snapshot sees every row they name, and
  -- it reads the table by primary key (06_attempts.sql, at the top).
  return query
    update public.jobs j
       set status = 'processing',
           attempt = j.attempt + 1,
           started_at = now(),
           updated_at = now(),
           lease_expires_at = now() + make_interval(secs => s.lease_seconds),
           worker_id = claim_due.worker_id,
           progress = 0,
           progress_message = null,
           dispatch_count = 0
      from jobhook.settings s
     where j.id = any (picked)
    returning j.*;
end;
$$;

revoke execute on function
  jobhook.room_for_user(text, uuid),
  jobhook.claim(uuid[], text),
  jobhook.next_waiting_user(text, uuid),
  jobhook.oldest_due(text, uuid, integer),
  jobhook.claim_due(text[], integer, text)
from public;
grant execute on function
  jobhook.room_for_user(text, uuid),
  jobhook.claim(uuid[], text),
  jobhook.next_waiting_user(text, uuid),
  jobhook.oldest_due(text, uuid, integer),
  jobhook.claim_due(text[], integer, text)
to service_role;

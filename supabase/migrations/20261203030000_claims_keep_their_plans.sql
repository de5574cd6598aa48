-- The claims' probes keep their plans: room_for_user and next_waiting_user become PL/pgSQL (a
-- SQL function with a SET clause is planned again on every call, and claim_due calls them once
-- per user it visits), claim_due plans each statement once per connection, asks for a user's
-- room only for a type with a cap, and claims in one update instead of through claim's handling
-- of caps when none of its types has one.

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

-- claim_due takes one owner's oldest jobs straight away when only one owner (a user, or the jobs
-- without one) waits for a type without a cap: the turns would serve that owner alone.

create or replace function jobhook.claim_due(job_types text[], max_jobs integer, worker_id text default null)
returns setof public.jobs
language plpgsql
set search_path = ''
as $$
declare
  -- A random point in the order of user ids: each call starts its turns somewhere else, so no
  -- user is always first.
  start uuid := gen_random_uuid();
  job_type text;
  visitor uuid;
  wrapped boolean;
  picked uuid[] := '{}';
  served jsonb := '[]';  -- {job_type, user_id} of every visit that took a job
  visit jsonb;
  taken uuid[];
  share integer;
  want integer;
begin
  if max_jobs is null or max_jobs < 1 then
    raise exception 'max_jobs must be at least 1, got %', coalesce(max_jobs::text, 'null')
      using errcode = '22023';
  end if;

  -- One type without a cap, and one owner waiting (one user, or only jobs without a user):
  -- the turns would serve that owner alone, oldest first. A few probes instead of the walk.
  if cardinality(claim_due.job_types) = 1
     and not exists (select from jobhook.job_types t
                      where t.name = claim_due.job_types[1]
                        and t.max_running_per_user is not null) then
    job_type := claim_due.job_types[1];
    visitor := jobhook.next_waiting_user(job_type, null);
    if visitor is null
       or (jobhook.next_waiting_user(job_type, visitor) is null
           and not exists (select from public.jobs j
                            where j.status = 'pending'
                              and j.job_type = claim_due.job_types[1]
                              and j.user_id is null)) then
      return query
        select * from jobhook.claim(array(select jobhook.oldest_due(job_type, visitor, max_jobs)),
                                    claim_due.worker_id);
      return;
    end if;
  end if;

  -- Turn one: the oldest due job of each user, users from `start` on, wrapping once; then the
  -- jobs no user owns, as one more user.
  <<types>>
  foreach job_type in array job_types loop
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
                 job_type, visitor, least(coalesce(jobhook.room_for_user(job_type, visitor), 1), 1)));
      if cardinality(taken) > 0 then
        picked := picked || taken;
        served := served || jsonb_build_object('job_type', job_type, 'user_id', visitor);
      end if;
      visitor := jobhook.next_waiting_user(job_type, visitor);
    end loop;
    if cardinality(picked) < max_jobs then
      taken := array(select jobhook.oldest_due(job_type, null, 1));
      if cardinality(taken) > 0 then
        picked := picked || taken;
        served := served || jsonb_build_object('job_type', job_type, 'user_id', null);
      end if;
    end if;
  end loop;

  -- Then the room left, shared among those served, each within their cap.
  if cardinality(picked) < max_jobs and jsonb_array_length(served) > 0 then
    share := ceil((max_jobs - cardinality(picked))::numeric / jsonb_array_length(served));
    for visit in select v from jsonb_array_elements(served) v loop
      exit when cardinality(picked) >= max_jobs;
      want := least(share, max_jobs - cardinality(picked),
                    coalesce(jobhook.room_for_user(visit ->> 'job_type',
                                                   (visit ->> 'user_id')::uuid) - 1, share));
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

  return query select * from jobhook.claim(picked, claim_due.worker_id);
end;
$$;

-- pending -> processing for up to max_jobs due jobs of the given types, oldest first, whichever
-- doorbell announced them. A runner whose line was full turned some doorbells away; once it has
-- room it takes that work back with this instead of leaving it to the sweep, which would ring
-- again only after redispatch_after_seconds. Rows another session is claiming are skipped, and a
-- job announced to another runner as well is claimed by one of them only (claim's own guard).
create function jobhook.claim_due(job_types text[], max_jobs integer, worker_id text default null)
returns setof public.jobs
language plpgsql
set search_path = ''
as $$
begin
  if max_jobs is null or max_jobs < 1 then
    raise exception 'max_jobs must be at least 1, got %', coalesce(max_jobs::text, 'null')
      using errcode = '22023';
  end if;
  return query
    select *
      from jobhook.claim(
        array(
          select j.id
            from public.jobs j
           where j.status = 'pending'
             and j.run_at <= now()
             and j.cancel_requested_at is null
             and j.job_type = any (claim_due.job_types)
           order by j.run_at
           limit claim_due.max_jobs
             for update skip locked),
        claim_due.worker_id);
end;
$$;

revoke execute on function jobhook.claim_due(text[], integer, text) from public;
grant execute on function jobhook.claim_due(text[], integer, text) to service_role;

-- processing -> pending without spending an attempt: what a runner that is shutting down (every
-- deploy, Ctrl-C) does with the attempts it could not finish in its grace period.
--
-- The attempt fence stays: `attempt` is never decremented, so the next claim gets a new number
-- and a runner still holding the released one matches no row (the bug behind River #1302).
-- Instead the budget grows by one: max_attempts counts attempts allowed, releases included, so
-- `max_attempts - attempt` is what is left whatever was released. `errors` records the release
-- (kind 'released') beside the failures, so the owner sees why an attempt number was skipped.
-- The job is due at once (run_at = now, so the stuck rule counts from here) and not yet rung
-- (dispatched_at null): the next every-second dispatch of any live app rings for it.

-- A released job has raised its budget past its type's, so the row's cap is lifted; job types
-- keep theirs (jobhook.job_types, 1 to 100).
alter table public.jobs drop constraint jobs_max_attempts_range;
alter table public.jobs add constraint jobs_max_attempts_range check (max_attempts >= 1);

-- Returns the status afterwards ('pending', or 'cancelled' when the owner asked to cancel in the
-- meantime), or null when the attempt is no longer this runner's.
create function jobhook.release(
  job_id uuid,
  attempt integer,
  reason text default 'the runner shut down before the attempt finished'
)
returns public.job_status
language plpgsql
set search_path = ''
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  new_status public.job_status;
  message text := 'released: ' || left(coalesce(release.reason, 'no reason given'), 1000);
begin
  update public.jobs j
     set status = case when j.cancel_requested_at is null then 'pending' else 'cancelled' end
                    ::public.job_status,
         max_attempts = j.max_attempts + 1,
         run_at = case when j.cancel_requested_at is null then now() else j.run_at end,
         finished_at = case when j.cancel_requested_at is null then null else now() end,
         dispatch_count = 0,
         dispatched_at = null,
         errors = j.errors || jobhook.error_entry(j.attempt, message, 'released'),
         updated_at = now(),
         lease_expires_at = null,
         worker_id = null
   where j.id = release.job_id
     and j.attempt = release.attempt
     -- as text, so no partial index fits and the lookup stays on the primary key
     and j.status::text = 'processing'
  returning j.status into new_status;
  return new_status;
end;
$$;

revoke execute on function jobhook.release(uuid, integer, text) from public;
grant execute on function jobhook.release(uuid, integer, text) to service_role;

-- public.jobs: one row per job. The row is the job; every client that can read it sees the truth.

-- Who moves a job out of each state:
--   pending    -> processing: jobhook.claim (the runner); -> cancelled: the owner's cancel request;
--                 -> failed: jobhook.sweep (never delivered, or never picked up in time)
--   processing -> completed: jobhook.complete; -> pending/failed: jobhook.fail or the sweep when
--                 the lease expires; -> pending: jobhook.release (a runner shutting down);
--                 -> cancelled: jobhook.acknowledge_cancel (the runner acknowledging); every
--                 end of an attempt goes through jobhook.finish_attempts (06_attempts.sql)
--   completed, failed, cancelled: final; jobhook.sweep prunes them after retention_days
create type public.job_status as enum ('pending', 'processing', 'completed', 'failed', 'cancelled');

-- fillfactor leaves room on each page so heartbeats, which change no indexed column, are HOT
-- updates that write no index entries.
create table public.jobs (
  id uuid primary key default gen_random_uuid(),
  user_id uuid default auth.uid() references auth.users (id) on delete cascade,
  job_type text not null,
  payload jsonb not null default '{}',
  status public.job_status not null default 'pending',
  progress smallint not null default 0
    constraint jobs_progress_range check (progress between 0 and 100),
  progress_message text
    constraint jobs_progress_message_length check (length(progress_message) <= 1000),
  result jsonb,
  error text,
  errors jsonb not null default '[]'
    constraint jobs_errors_array check (jsonb_typeof(errors) = 'array'),
  attempt integer not null default 0
    constraint jobs_attempt_range check (attempt >= 0 and attempt <= max_attempts),
  -- max_attempts counts the attempts allowed, releases included: jobhook.release raises it by one
  -- so that a released attempt costs nothing. A released job's budget can then exceed its type's,
  -- so the row has no upper cap; job types keep theirs (jobhook.job_types, 1 to 100).
  max_attempts integer not null default 3
    constraint jobs_max_attempts_range check (max_attempts >= 1),
  run_at timestamptz not null default now(),
  idempotency_key text
    constraint jobs_idempotency_key_length check (length(idempotency_key) between 1 and 255),
  cancel_requested_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  -- Bookkeeping: clients may read it, only the transition functions write it.
  dispatch_count integer not null default 0,
  dispatched_at timestamptz,
  lease_expires_at timestamptz,
  worker_id text,

  -- The state machine written into the table: each status implies its timestamps.
  constraint jobs_status_timestamps check (
    case status
      when 'pending' then finished_at is null and lease_expires_at is null
      when 'processing' then started_at is not null and finished_at is null
                             and lease_expires_at is not null and attempt >= 1
      else finished_at is not null and lease_expires_at is null
    end
  ),
  constraint jobs_completed_progress check (status <> 'completed' or progress = 100),
  -- A retried client insert with the same key conflicts instead of creating a second job;
  -- supabase-js can turn that into a no-op with upsert(..., { ignoreDuplicates: true }).
  constraint jobs_idempotency_key_unique unique (user_id, job_type, idempotency_key)
) with (fillfactor = 80);

comment on table public.jobs is 'Background jobs. Insert a row to enqueue; watch it with Realtime.';
comment on column public.jobs.errors is
  'One entry per failed attempt: {attempt, at, message, kind}. Append-only.';
comment on column public.jobs.cancel_requested_at is
  'Set it to cancel: a pending job is cancelled at once, a running job at its next heartbeat.';

-- A user's list, newest first (the REST API and supabase-js `.order("created_at")`).
create index jobs_user_created_idx on public.jobs (user_id, created_at desc);
-- Per-user quota on unfinished jobs.
create index jobs_user_unfinished_idx on public.jobs (user_id, job_type)
  where status in ('pending', 'processing');
-- The sweep's three scans, each over a partial index whose size is the number of live (or
-- prunable) jobs, not the table. The processing index avoids lease_expires_at on purpose:
-- heartbeats move the lease and must not touch an index (see fillfactor above).
create index jobs_pending_run_at_idx on public.jobs (run_at) where status = 'pending';
-- Pending jobs not rung since they fell due (delayed jobs, retries after backoff): what the
-- runtime's every-second jobhook.dispatch_due() looks for. A backlog of jobs already rung and
-- waiting for a runner stays out of it.
create index jobs_due_idx on public.jobs (run_at)
  where status = 'pending' and (dispatched_at is null or dispatched_at < run_at);
create index jobs_processing_idx on public.jobs (started_at) where status = 'processing';
create index jobs_finished_idx on public.jobs (finished_at)
  where status in ('completed', 'failed', 'cancelled');
-- Due jobs per type and user, oldest first: the visits of jobhook.claim_due, which serves users
-- in turn (05_claim.sql).
create index jobs_pending_by_user_idx on public.jobs (job_type, user_id, run_at)
  where status = 'pending';
-- Running jobs per type and user: the per-user running caps (jobhook.room_for_user).
create index jobs_processing_by_user_idx on public.jobs (job_type, user_id)
  where status = 'processing';

-- Row-level security is the only authorisation: a client sees and cancels its own rows.
-- `(select auth.uid())` is evaluated once per statement instead of once per row.
alter table public.jobs enable row level security;

create policy jobs_select_own on public.jobs
  for select to authenticated
  using (user_id = (select auth.uid()));

create policy jobs_insert_own on public.jobs
  for insert to authenticated
  with check (user_id = (select auth.uid()));

create policy jobs_cancel_own on public.jobs
  for update to authenticated
  using (user_id = (select auth.uid()) and status in ('pending', 'processing'))
  with check (user_id = (select auth.uid()));

-- Supabase grants everything on new public tables to anon and authenticated by default; take
-- that back and give clients exactly the columns they may write.
revoke all on public.jobs from anon, authenticated;
grant select on public.jobs to authenticated;
grant insert (job_type, payload, run_at, idempotency_key) on public.jobs to authenticated;
grant update (cancel_requested_at) on public.jobs to authenticated;
grant select, insert, update, delete on public.jobs to service_role;

-- Realtime streams each change to the subscribers whose RLS lets them read the row.
alter publication supabase_realtime add table public.jobs;

-- Named queries the runtime runs, loaded once by jobhook.store. Each starts with `-- name: <name>`.
-- Every transition is one call of its SQL function: Python never composes a status update.

-- The payload comes as text and is parsed job by job (jobhook.store.ClaimedJob.of): a payload
-- the runtime cannot read must fail its own job, not the whole batch it was claimed with.

-- name: claim
-- With how many inserts have shared a doorbell so far: when that moved, the ring that named
-- these ids may have announced others too, and the runner drains (jobhook.executor).
select id, user_id, job_type, payload::text as payload, attempt, max_attempts, lease_expires_at,
       started_at - greatest(created_at, run_at) as start_latency,
       (select s.last_value from jobhook.shared_doorbells s) as shared_doorbells
  from jobhook.claim(%(ids)s::uuid[], %(worker_id)s);

-- name: claim_due
select id, user_id, job_type, payload::text as payload, attempt, max_attempts, lease_expires_at,
       started_at - greatest(created_at, run_at) as start_latency
  from jobhook.claim_due(%(job_types)s::text[], %(max_jobs)s, %(worker_id)s);

-- name: keep_draining
select watching_until, shared_doorbells
  from jobhook.keep_draining(%(job_types)s::text[], %(linger_ms)s);

-- name: stop_draining
select jobhook.stop_draining(%(job_types)s::text[], %(watched_until)s)::text;

-- name: shared_doorbells
select s.last_value as shared_doorbells from jobhook.shared_doorbells s;

-- name: heartbeat
select cancel_requested, lease_expires_at
  from jobhook.heartbeat(%(id)s, %(attempt)s, %(progress)s, %(message)s);

-- name: complete_many
select id from jobhook.complete_many(%(outcomes)s) as c (id);

-- name: fail
select jobhook.fail(%(id)s, %(attempt)s, %(message)s, %(retryable)s, %(kind)s)::text;

-- name: release
select jobhook.release(%(id)s, %(attempt)s, %(reason)s)::text;

-- name: acknowledge_cancel
select jobhook.acknowledge_cancel(%(id)s, %(attempt)s)::text;

-- name: dispatch_due
-- Also when the next pending job falls due, so the ticker can wake just in time for it.
select jobhook.dispatch_due() as dispatched,
       (select min(j.run_at) from public.jobs j
         where j.status = 'pending' and j.run_at > now() and j.cancel_requested_at is null)
         - now() as next_due_in;

-- name: ping
select 1;

-- name: readiness
-- What /ready needs from the database, in one round trip: the doorbell's configuration in Vault
-- and the triggers that would stop it.
select c.url, c.secret, jobhook.foreign_queue_triggers() as foreign_queue_triggers
  from jobhook.webhook_config() c;

-- Queries run as a client (role authenticated + request.jwt.claims, as PostgREST does), so
-- row-level security decides what they see and change.

-- name: act_as
-- The limits hold for the rest of the transaction (jobhook.store.Limits says why per transaction).
select set_config('role', %(role)s, true), set_config('request.jwt.claims', %(claims)s, true),
       set_config('statement_timeout', %(statement_timeout)s, true),
       set_config('lock_timeout', %(lock_timeout)s, true);

-- name: client_insert
insert into public.jobs (job_type, payload, run_at, idempotency_key)
values (%(job_type)s, %(payload)s, coalesce(%(run_at)s, now()), %(idempotency_key)s)
on conflict (user_id, job_type, idempotency_key) do nothing
returning *;

-- name: client_insert_many
insert into public.jobs (job_type, payload)
select %(job_type)s, payload from unnest(%(payloads)s::jsonb[]) as p (payload)
returning *;

-- name: client_by_idempotency_key
select * from public.jobs
 where job_type = %(job_type)s and idempotency_key = %(idempotency_key)s;

-- name: client_get
select * from public.jobs where id = %(id)s;

-- name: client_list
-- The count is its own aggregate, joined to the page, so `total` is the true count for any
-- offset: past the end the page is one row of NULLs beside it, where `count(*) over ()` over
-- the page's rows gave no row at all. Both halves run as the caller, under the same RLS.
select page.*, counted.total
  from (select count(*) as total
          from public.jobs j
         where (%(status)s::public.job_status is null or j.status = %(status)s::public.job_status)
           and (%(job_type)s::text is null or j.job_type = %(job_type)s::text)) counted
  left join lateral (
        select j.*
          from public.jobs j
         where (%(status)s::public.job_status is null or j.status = %(status)s::public.job_status)
           and (%(job_type)s::text is null or j.job_type = %(job_type)s::text)
         order by j.created_at desc, j.id desc
         limit %(limit)s offset %(offset)s) page on true
 order by page.created_at desc, page.id desc;

-- name: client_cancel
update public.jobs set cancel_requested_at = now() where id = %(id)s returning *;

-- Operator's view, run as the app's own role (bypasses RLS).

-- name: stats_by_status_and_type
select job_type, status::text as status, count(*)::int as jobs
  from public.jobs
 group by job_type, status;

-- name: stats_health
select extract(epoch from now() - min(run_at) filter (where status = 'pending' and run_at <= now()))
         as oldest_due_pending_seconds,
       count(*) filter (where status = 'processing' and lease_expires_at < now())::int
         as expired_leases
  from public.jobs
 where status in ('pending', 'processing');

-- name: sweep
select jobhook.sweep() as summary;

-- The job type catalogue, written by each deployment (jobhook.registry).

-- name: sync_job_type
insert into jobhook.job_types as t
  (name, enabled, max_attempts, timeout_seconds, backoff_base_seconds, backoff_max_seconds,
   max_unfinished_per_user, max_running_per_user, tier, params_schema, description,
   served_until, updated_at)
values
  (%(name)s, true, %(max_attempts)s, %(timeout_seconds)s, %(backoff_base_seconds)s,
   %(backoff_max_seconds)s, %(max_unfinished_per_user)s, %(max_running_per_user)s, %(tier)s,
   %(params_schema)s,
   %(description)s, now() + make_interval(secs => %(serve_seconds)s), now())
on conflict (name) do update set
  enabled = true,
  max_attempts = excluded.max_attempts,
  timeout_seconds = excluded.timeout_seconds,
  backoff_base_seconds = excluded.backoff_base_seconds,
  backoff_max_seconds = excluded.backoff_max_seconds,
  max_unfinished_per_user = excluded.max_unfinished_per_user,
  max_running_per_user = excluded.max_running_per_user,
  tier = excluded.tier,
  params_schema = excluded.params_schema,
  description = excluded.description,
  served_until = greatest(t.served_until, excluded.served_until),
  updated_at = now();

-- name: renew_job_types
-- What a live deployment does every minute: it still serves its types (their options stay as
-- the last deployment to start wrote them), and the types nobody renewed in time are disabled.
with renewed as (
  update jobhook.job_types t
     set served_until = greatest(t.served_until, now() + make_interval(secs => %(serve_seconds)s))
   where t.name = any(%(names)s)
  returning t.name
)
update jobhook.job_types t
   set enabled = false, updated_at = now()
 where t.enabled
   and t.served_until < now()
   and t.name <> all(%(names)s)
returning t.name;

-- Vault by name, for the dev stack and the tools that set the doorbell's secrets
-- (jobhook.vault); the runtime reads them through jobhook.webhook_config (readiness).

-- name: vault_read
select decrypted_secret from vault.decrypted_secrets where name = %(name)s;

-- name: vault_find
select id, decrypted_secret from vault.decrypted_secrets where name = %(name)s;

-- name: vault_create
select vault.create_secret(%(value)s, %(name)s);

-- name: vault_update
select vault.update_secret(%(id)s, %(value)s);

-- name: list_job_types
select name, enabled, tier, max_attempts, timeout_seconds from jobhook.job_types order by name;

-- name: served_job_types
-- The types some live deployment renews (jobhook.job_types.served_until): what can run now.
select name from jobhook.job_types where enabled and served_until > now();

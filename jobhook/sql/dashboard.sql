-- Named queries of the operators' dashboard (functions/dashboard), read as jobhook_operator
-- (supabase/schemas/10_dashboard.sql): every job under its own policy, with no write but the
-- two transitions that record who asked. None reads more than the live jobs, the last hour's
-- finished ones, or one page of the chosen time range: the table's history is never scanned.

-- name: dashboard_overview
-- Live jobs through their partial indexes, finished ones of the last hour through
-- jobs_finished_idx; the per-minute series and the
-- latency percentiles come from that hour's rows.
set local role jobhook_operator;
with finished as (
  select j.job_type, j.status::text as status, j.finished_at,
         extract(epoch from j.started_at - greatest(j.created_at, j.run_at)) as latency
    from public.jobs j
   where j.status in ('completed', 'failed', 'cancelled')
     and j.finished_at > now() - interval '1 hour'
),
live as (
  -- One status at a time: each matches its partial index (jobs_pending_by_user_idx,
  -- jobs_processing_by_user_idx, both led by job_type), where `status in (...)` matched none.
  select j.job_type, 'pending' as status, count(*)::int as jobs
    from public.jobs j where j.status = 'pending' group by 1
  union all
  select j.job_type, 'processing', count(*)::int
    from public.jobs j where j.status = 'processing' group by 1
),
minutes as (
  select m.minute,
         count(f.*) filter (where f.status = 'completed')::int as completed,
         count(f.*) filter (where f.status = 'failed')::int as failed,
         percentile_cont(0.5) within group (order by f.latency) as p50,
         percentile_cont(0.95) within group (order by f.latency) as p95
    from generate_series(date_trunc('minute', now()) - interval '59 minutes',
                         date_trunc('minute', now()), interval '1 minute') m (minute)
    left join finished f on date_trunc('minute', f.finished_at) = m.minute
   group by m.minute
)
select
  now() as at,
  (select coalesce(jsonb_agg(jsonb_build_object('job_type', c.job_type, 'status', c.status,
                                                'jobs', c.jobs)
                             order by c.job_type, c.status), '[]')
     from (select * from live
           union all
           select f.job_type, f.status, count(*)::int from finished f group by 1, 2) c)
    as counts,
  (select jsonb_build_object('id', j.id, 'job_type', j.job_type, 'run_at', j.run_at,
                             'waiting_seconds', extract(epoch from now() - j.run_at))
     from public.jobs j
    where j.status = 'pending' and j.run_at <= now() and j.cancel_requested_at is null
    order by j.run_at
    limit 1) as oldest_due,
  (select coalesce(jsonb_agg(jsonb_build_object(
            'minute', m.minute, 'completed', m.completed, 'failed', m.failed,
            'p50', m.p50, 'p95', m.p95) order by m.minute), '[]')
     from minutes m) as per_minute,
  (select percentile_cont(0.5) within group (order by f.latency) from finished f) as p50,
  (select percentile_cont(0.95) within group (order by f.latency) from finished f) as p95,
  (select count(*) filter (where f.status = 'failed')::float
          / nullif(count(*) filter (where f.status in ('completed', 'failed')), 0)
     from finished f) as failure_rate,
  (select count(*)::int from public.jobs j where j.status = 'processing') as running,
  (select coalesce(jsonb_agg(jsonb_build_object(
            'id', e.id, 'job_type', e.job_type, 'worker_id', e.worker_id, 'attempt', e.attempt,
            'expires_in', extract(epoch from e.lease_expires_at - now())) order by e.lease_expires_at),
          '[]')
     from (select j.id, j.job_type, j.worker_id, j.attempt, j.lease_expires_at
             from public.jobs j
            where j.status = 'processing' and j.lease_expires_at < now() + interval '15 seconds'
            order by j.lease_expires_at
            limit 20) e) as expiring_leases;

-- name: dashboard_jobs
-- One page of the list after the keyset (after_at, after_id), in the chosen order: see
-- jobhook.operator_jobs for why it is a function, and tests/test_dashboard_plans.py for its plan.
set local role jobhook_operator;
select * from jobhook.operator_jobs(
  %(status)s::public.job_status, %(job_type)s::text, %(user_id)s::uuid, %(since)s::timestamptz,
  %(until)s::timestamptz, %(error)s::text, %(after_at)s::timestamptz, %(after_id)s::uuid,
  %(newest)s::boolean, %(limit)s::integer);

-- name: dashboard_selection
-- What a bulk action would touch: the ids of the jobs the filter selects, newest first, up to
-- the bulk limit (the count the confirmation shows is this list's length).
set local role jobhook_operator;
select o.id from jobhook.operator_jobs(
  %(status)s::public.job_status, %(job_type)s::text, %(user_id)s::uuid, %(since)s::timestamptz,
  %(until)s::timestamptz, %(error)s::text, %(after_at)s::timestamptz, %(after_id)s::uuid,
  true, %(limit)s::integer) o;

-- name: dashboard_job
-- One job, its type's options, what operators did to it, and pg_net's replies recorded while its
-- last doorbell could still be answered. pg_net keeps neither the request nor its body once
-- sent, so a reply cannot name its jobs; these are the replies that arrived within the
-- doorbell's timeout of the last ring (of any job rung then).
set local role jobhook_operator;
select j.*, j.status::text as status,
       (select to_jsonb(t) - 'params_schema' from jobhook.job_types t where t.name = j.job_type)
         as job_type_options,
       (select coalesce(jsonb_agg(jsonb_build_object('at', a.at, 'actor', a.actor,
                                                     'action', a.action, 'attempt', a.attempt)
                                  order by a.at), '[]')
          from jobhook.operator_actions a where a.job_id = j.id) as operator_actions,
       (select coalesce(jsonb_agg(jsonb_build_object(
                 'id', r.id, 'created', r.created, 'status_code', r.status_code,
                 'timed_out', r.timed_out, 'error_msg', r.error_msg) order by r.created), '[]')
          from net._http_response r
         where j.dispatched_at is not null
           and r.created >= j.dispatched_at
           and r.created < j.dispatched_at
                           + make_interval(secs => s.dispatch_timeout_ms / 1000.0 + 5)) as replies
  from public.jobs j, jobhook.settings s
 where j.id = %(id)s::uuid;

-- name: dashboard_recent_replies
-- pg_net's latest failed replies, for the health panel, through the index on `created`.
set local role jobhook_operator;
select r.id, r.created, r.status_code, r.timed_out, r.error_msg
  from net._http_response r
 where r.created > now() - interval '1 hour'
   and (r.timed_out or r.error_msg is not null or r.status_code is null or r.status_code >= 400)
 order by r.created desc
 limit 10;

-- name: dashboard_sweeps
-- The sweep's last runs, failures first.
set local role jobhook_operator;
select s.* from jobhook.sweep_runs(30) s order by (s.status = 'failed') desc, s.runid desc limit 10;

-- name: dashboard_job_types
set local role jobhook_operator;
select t.name from jobhook.job_types t order by t.name;

-- name: dashboard_retry
set local role jobhook_operator;
select r.id from jobhook.retry(%(ids)s::uuid[], %(actor)s) as r (id);

-- name: dashboard_cancel
set local role jobhook_operator;
select c.id from jobhook.cancel_for_operator(%(ids)s::uuid[], %(actor)s) as c (id);

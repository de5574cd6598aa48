-- Named queries of jobhook.health: what /ready, the dashboard's health panel and
-- `jobhook doctor` check, read in one round trip as jobhook_operator
-- (supabase/schemas/10_dashboard.sql), which reads no secret and writes nothing.

-- name: health
-- Each column is one check's facts; jobhook.health judges them. pg_net's replies are read over
-- the last `window_seconds` through the index on `created`; the sweep's runs by cron's primary
-- key (jobhook.sweep_runs); the queue's size by counting it, which pg_net keeps small (it
-- deletes each request as it sends it).
set local role jobhook_operator;
select
  now() as checked_at,
  (select coalesce(array_agg(e.name order by e.name), '{}')
     from unnest(%(extensions)s::text[]) e (name)
    where not exists (select from pg_catalog.pg_extension x where x.extname = e.name))
    as missing_extensions,
  (select coalesce(array_agg(f.name order by f.name), '{}')
     from unnest(%(functions)s::text[]) f (name)
    where not exists (select from pg_catalog.pg_proc p
                       where p.pronamespace = 'jobhook'::regnamespace and p.proname = f.name))
    as missing_functions,
  (select coalesce(array_agg(m.version order by m.version), '{}')
     from unnest(%(migrations)s::text[]) m (version)
    where not exists (select from supabase_migrations.schema_migrations s
                       where s.version = m.version))
    as missing_migrations,
  jobhook.vault_secrets_present() as vault_secrets,
  jobhook.webhook_url_unusable() as webhook_url_problem,
  jobhook.signing_secret_accepted(%(fingerprints)s::text[]) as signing_secret_accepted,
  jobhook.foreign_queue_triggers() as foreign_queue_triggers,
  (select count(*)::int from net.http_request_queue) as queued_doorbells,
  replies.total as replies, replies.failed as failed_replies, replies.timed_out as timed_out_replies,
  replies.last_error,
  (select count(*) filter (where l.timed_out or l.error_msg is not null
                              or l.status_code is null or l.status_code >= 400)::int
     from (select r.timed_out, r.error_msg, r.status_code from net._http_response r
            where r.created > now() - make_interval(secs => %(window_seconds)s)
            order by r.created desc limit 3) l) as latest_failed,
  jobhook.sweep_scheduled() as sweep_scheduled,
  sweeps.runs as sweep_runs, sweeps.failed as failed_sweeps, sweeps.last_run_at,
  sweeps.last_failure,
  (select coalesce(array_agg(t.name order by t.name), '{}')
     from jobhook.job_types t
    where t.enabled and t.name <> all(%(handled)s::text[]))
    as unhandled_job_types
  from (select count(*)::int as total,
               count(*) filter (where r.timed_out or r.error_msg is not null
                                   or r.status_code is null or r.status_code >= 400)::int as failed,
               count(*) filter (where r.timed_out)::int as timed_out,
               (array_agg(coalesce(r.error_msg, 'HTTP ' || r.status_code::text)
                          order by r.created desc)
                  filter (where r.timed_out or r.error_msg is not null
                             or r.status_code is null or r.status_code >= 400))[1] as last_error
          from net._http_response r
         where r.created > now() - make_interval(secs => %(window_seconds)s)) replies,
       (select count(*)::int as runs,
               count(*) filter (where s.status = 'failed')::int as failed,
               max(s.start_time) as last_run_at,
               (array_agg(s.return_message order by s.runid desc)
                  filter (where s.status = 'failed'))[1] as last_failure
          from jobhook.sweep_runs(%(sweep_runs)s) s) sweeps;

-- name: alert_facts
-- What jobhook.alerts watches, since its last look (`since`): jobs that failed for good (through
-- jobs_finished_idx), the sweep's failed runs, pg_net's failed replies, and the oldest due job.
set local role jobhook_operator;
select
  (select count(*)::int from public.jobs j
    where j.status in ('completed', 'failed', 'cancelled') and j.finished_at > %(since)s
      and j.status = 'failed') as failed_jobs,
  (select coalesce(jsonb_agg(jsonb_build_object('id', f.id, 'job_type', f.job_type,
                                                'error', left(f.error, 200))), '[]')
     from (select j.id, j.job_type, j.error from public.jobs j
            where j.status in ('completed', 'failed', 'cancelled') and j.finished_at > %(since)s
              and j.status = 'failed'
            order by j.finished_at desc limit 5) f) as failed_sample,
  (select count(*)::int from jobhook.sweep_runs(10) s
    where s.status = 'failed' and s.start_time > %(since)s) as failed_sweeps,
  (select max(s.return_message) from jobhook.sweep_runs(10) s
    where s.status = 'failed' and s.start_time > %(since)s) as sweep_error,
  (select count(*)::int from net._http_response r
    where r.created > %(since)s
      and (r.timed_out or r.error_msg is not null or r.status_code is null
           or r.status_code >= 400)) as failed_replies,
  (select jsonb_build_object('id', j.id, 'job_type', j.job_type,
                             'waiting_seconds', extract(epoch from now() - j.run_at))
     from public.jobs j
    where j.status = 'pending' and j.run_at <= now() and j.cancel_requested_at is null
    order by j.run_at limit 1) as oldest_due,
  now() as checked_at;

-- name: take_alert_turn
set local role jobhook_operator;
select jobhook.take_alert_turn(%(kind)s, %(every_seconds)s) as turn;

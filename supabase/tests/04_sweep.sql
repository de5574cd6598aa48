-- jobhook.sweep(): rescue expired leases, re-ring lost doorbells, fail what cannot run, prune.
begin;
\ir helpers/setup.psql
select plan(25);

select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type, idempotency_key)
select 'sample_task', key
  from unnest(array['expired', 'expired-last', 'expired-cancel', 'alive', 'lost', 'fresh',
                    'undeliverable', 'stuck', 'old-done', 'new-done']) key;
insert into public.jobs (job_type, idempotency_key, run_at)
values ('sample_task', 'delayed', now() + interval '1 hour');
select tests.clear_authentication();
create temp table k as select idempotency_key as key, id from public.jobs;
delete from net.http_request_queue;

-- Running jobs: three whose runners died, one alive though started long ago.
select jobhook.claim(array(select id from k where key in
  ('expired', 'expired-last', 'expired-cancel', 'alive')), 'worker-1');
update public.jobs set attempt = 3 where id = (select id from k where key = 'expired-last');
select jobhook.cancel((select id from k where key = 'expired-cancel'));
update public.jobs set lease_expires_at = now() - interval '1 second'
 where id in (select id from k where key in ('expired', 'expired-last', 'expired-cancel'));
update public.jobs set started_at = now() - interval '3 hours'
 where id = (select id from k where key = 'alive');

-- Pending jobs: a lost doorbell, one just rung, one rung too often, one never started in time.
update public.jobs set dispatched_at = now() - interval '61 seconds', dispatch_count = 1
 where id = (select id from k where key = 'lost');
update public.jobs set dispatched_at = now() - interval '61 seconds', dispatch_count = 5
 where id = (select id from k where key = 'undeliverable');
update public.jobs set run_at = now() - interval '16 minutes', dispatched_at = now() - interval '30 seconds'
 where id = (select id from k where key = 'stuck');
update public.jobs set run_at = now() - interval '1 second'
 where id = (select id from k where key = 'delayed');

-- Finished jobs, one past retention.
update public.jobs set status = 'completed', progress = 100, finished_at = now() - interval '31 days'
 where id = (select id from k where key = 'old-done');
update public.jobs set status = 'completed', progress = 100, finished_at = now() - interval '29 days'
 where id = (select id from k where key = 'new-done');

select is(
  jobhook.sweep(),
  '{"rescued": 3, "failed_undelivered": 1, "failed_not_started": 1, "dispatched": 2,
    "pruned": 1, "history_pruned": 0, "deliveries_stalled": false}'::jsonb,
  'the sweep reports what it did'
);

select results_eq(
  $$select status::text, errors -> 0 ->> 'kind', error like 'lease expired%', lease_expires_at is null
      from public.jobs where id = (select id from k where key = 'expired')$$,
  $$values ('pending', 'lease_expired', true, true)$$,
  'an expired lease with attempts left goes back to pending with the lost attempt in errors'
);
select ok(
  (select run_at > now() from public.jobs where id = (select id from k where key = 'expired')),
  'and waits out a backoff like any retry'
);
select is(
  (select error from public.jobs where id = (select id from k where key = 'expired')),
  'lease expired: the runner stopped heartbeating during attempt 1 (worker worker-1)',
  'the error says what happened, to which attempt, on which worker'
);
select is(
  (select status::text from public.jobs where id = (select id from k where key = 'expired-last')),
  'failed',
  'an expired lease on the last attempt fails the job'
);
select is(
  (select status::text from public.jobs where id = (select id from k where key = 'expired-cancel')),
  'cancelled',
  'an expired lease on a job its owner asked to cancel ends cancelled'
);
select results_eq(
  $$select status::text, attempt, jsonb_array_length(errors)
      from public.jobs where id = (select id from k where key = 'alive')$$,
  $$values ('processing', 1, 0)$$,
  'a job with a live lease is left alone, however long it has run'
);

select results_eq(
  $$select status::text, dispatch_count, dispatched_at = now()
      from public.jobs where id = (select id from k where key = 'lost')$$,
  $$values ('pending', 2, true)$$,
  'a pending job whose doorbell is older than redispatch_after_seconds is rung again'
);
select results_eq(
  $$select dispatch_count from public.jobs where id = (select id from k where key = 'fresh')$$,
  $$values (1)$$,
  'a job rung recently is not rung again'
);
select results_eq(
  $$select status::text, errors -> 0 ->> 'kind', error
      from public.jobs where id = (select id from k where key = 'undeliverable')$$,
  $$values ('failed', 'undelivered', 'not picked up after 5 deliveries of the webhook; '
            || 'check that the endpoint is up (net._http_response has the replies)')$$,
  'a job rung max_dispatches times without a taker fails and says why'
);
select results_eq(
  $$select status::text, errors -> 0 ->> 'kind', error
      from public.jobs where id = (select id from k where key = 'stuck')$$,
  $$values ('failed', 'not_started', 'not started within 15 minutes of being due (1 deliveries)')$$,
  'a job due for longer than stuck_timeout_minutes fails and says why'
);
select results_eq(
  $$select dispatch_count, dispatched_at = now()
      from public.jobs where id = (select id from k where key = 'delayed')$$,
  $$values (1, true)$$,
  'a delayed job that became due is rung'
);

select is(
  (select count(*)::int from net.http_request_queue), 1,
  'the re-rung and the newly due jobs share one request'
);
select is(
  (select jsonb_array_length(convert_from(body, 'UTF8')::jsonb -> 'jobs') from net.http_request_queue),
  2,
  'which carries both'
);
select ok(
  (select convert_from(body, 'UTF8')::jsonb -> 'jobs' @> jsonb_build_array(
     jsonb_build_object('id', (select id from k where key = 'lost'), 'job_type', 'sample_task'))
     from net.http_request_queue),
  'the lost job is in it'
);

select is(
  (select count(*)::int from public.jobs where id = (select id from k where key = 'old-done')), 0,
  'a job finished longer ago than retention_days is pruned'
);
select is(
  (select count(*)::int from public.jobs where id = (select id from k where key = 'new-done')), 1,
  'a job finished within retention_days is kept'
);

-- A second pass finds nothing new to do: the sweep is safe to run at any time.
select is(
  jobhook.sweep(),
  '{"rescued": 0, "failed_undelivered": 0, "failed_not_started": 0, "dispatched": 0,
    "pruned": 0, "history_pruned": 0, "deliveries_stalled": false}'::jsonb,
  'running the sweep again changes nothing'
);

-- The thresholds are the operator's: a tighter stuck timeout takes effect on the next pass.
update jobhook.settings set stuck_timeout_minutes = 1;
update public.jobs set run_at = now() - interval '2 minutes', dispatched_at = now()
 where id = (select id from k where key = 'fresh');
select is(
  jobhook.sweep() ->> 'failed_not_started', '1', 'stuck_timeout_minutes is read on every pass'
);
update jobhook.settings set stuck_timeout_minutes = 15;

-- The schedule.
select results_eq(
  $$select schedule, command from cron.job where jobname = 'jobhook-sweep'$$,
  $$values ('* * * * *'::text, 'select jobhook.sweep()'::text)$$,
  'pg_cron runs the sweep every minute'
);

-- Who may run it.
select tests.authenticate_as('alice@example.com');
select throws_ok($$select jobhook.sweep()$$, '42501', null, 'a client cannot run the sweep');
select throws_ok(
  $$select jobhook.dispatch('[]')$$, '42501', null, 'a client cannot ring the doorbell'
);
select throws_ok(
  $$select jobhook.dispatch_due()$$, '42501', null, 'nor dispatch due jobs'
);
select tests.authenticate_as_service_role();
select lives_ok($$select jobhook.sweep()$$, 'service_role can run the sweep');
select tests.clear_authentication();
select ok(
  not has_function_privilege('authenticated', 'jobhook.sign_webhook(text, text, bigint, text)', 'execute'),
  'clients cannot use the signer'
);

select * from finish();
rollback;

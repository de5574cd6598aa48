-- jobhook.release: a runner that shuts down hands an unfinished attempt back without spending it.
begin;
\ir helpers/setup.psql
select plan(12);

select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type, idempotency_key) values
  ('one_shot', 'once'), ('sample_task', 'cancelled'), ('sample_task', 'stale');
select tests.authenticate_as_service_role();
create temp table k as select idempotency_key as key, id from public.jobs;
grant select on k to service_role;

select jobhook.claim(array(select id from k), 'worker-1');
update public.jobs set run_at = now() - interval '20 minutes'
 where id = (select id from k where key = 'once');

select is(
  jobhook.release((select id from k where key = 'once'), 1), 'pending'::public.job_status,
  'a released attempt goes back to pending'
);
select results_eq(
  $$select attempt, max_attempts, worker_id, lease_expires_at, dispatched_at, run_at = now()
      from public.jobs where id = (select id from k where key = 'once')$$,
  $$values (1, 2, null::text, null::timestamptz, null::timestamptz, true)$$,
  'keeping its attempt number, with one more attempt in its budget, due now and not yet rung'
);
select results_eq(
  $$select e ->> 'kind', (e ->> 'attempt')::int, e ->> 'message'
      from public.jobs, jsonb_array_elements(errors) e
     where id = (select id from k where key = 'once')$$,
  $$values ('released', 1, 'released: the runner shut down before the attempt finished')$$,
  'errors records the release'
);
select is(
  (select error from public.jobs where id = (select id from k where key = 'once')), null,
  'which is not an error of the job'
);
select is(
  jobhook.release((select id from k where key = 'once'), 1), null,
  'an attempt released once cannot be released again'
);
select ok(
  not jobhook.complete((select id from k where key = 'once'), 1, '{"late": true}'),
  'nor completed by the runner that released it: the attempt fence holds'
);
select ok(
  (select count(*) = 1 from jobhook.dispatch_due()
     where (select count(*) from net.http_request_queue) > 0),
  'the every-second dispatch rings for it'
);
select results_eq(
  $$select attempt, max_attempts from jobhook.claim(
      array[(select id from k where key = 'once')], 'worker-2')$$,
  $$values (2, 2)$$,
  'the next claim is attempt 2, the last of its budget'
);
select is(
  (jobhook.sweep() ->> 'failed_not_started')::int, 0,
  'run_at was reset, so the stuck rule did not fail it while it waited'
);

-- The owner asked to cancel while the attempt ran: a release ends the job instead.
select jobhook.cancel((select id from k where key = 'cancelled'));
select is(
  jobhook.release((select id from k where key = 'cancelled'), 1), 'cancelled'::public.job_status,
  'a job whose owner asked to cancel is cancelled on release'
);
select ok(
  (select finished_at is not null from public.jobs where id = (select id from k where key = 'cancelled')),
  'and finished'
);

select is(
  jobhook.release((select id from k where key = 'stale'), 2), null,
  'an attempt that is not the current one releases nothing'
);

select * from finish();
rollback;

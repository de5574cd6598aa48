-- The job state machine: every transition, and the guard that keeps a stale runner out.
begin;
\ir helpers/setup.psql
select plan(41);

-- Jobs are enqueued by alice; the runner acts as service_role.
select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type, idempotency_key) values
  ('sample_task', 'a'), ('sample_task', 'b'), ('sample_task', 'c'), ('one_shot', 'd'),
  ('sample_task', 'e'), ('sample_task', 'f'), ('sample_task', 'g');
insert into public.jobs (job_type, idempotency_key, run_at)
values ('sample_task', 'delayed', now() + interval '1 hour');
select tests.authenticate_as_service_role();

create temp table k as select idempotency_key as key, id from public.jobs;
grant select on k to authenticated, service_role;

-- claim
select results_eq(
  $$select status::text, attempt, worker_id from jobhook.claim(
      array[(select id from k where key = 'a')], 'worker-1')$$,
  $$values ('processing', 1, 'worker-1')$$,
  'claim moves a pending job to processing, attempt 1, owned by the worker'
);
select ok(
  (select lease_expires_at > now() and started_at is not null from public.jobs
    where id = (select id from k where key = 'a')),
  'and gives it a lease and a start time'
);
select is_empty(
  $$select * from jobhook.claim(array[(select id from k where key = 'a')], 'worker-2')$$,
  'a processing job cannot be claimed again'
);
select is_empty(
  $$select * from jobhook.claim(array[(select id from k where key = 'delayed')], 'worker-1')$$,
  'a job that is not due yet cannot be claimed'
);
select is(
  (select count(*)::int from jobhook.claim(
     array[(select id from k where key = 'b'), (select id from k where key = 'c'),
           (select id from k where key = 'a')], 'worker-1')),
  2,
  'claim takes many ids and returns only those it claimed'
);

-- heartbeat
select results_eq(
  $$select cancel_requested from jobhook.heartbeat(
      (select id from k where key = 'a'), 1, 40, 'step 2 of 5')$$,
  $$values (false)$$,
  'heartbeat answers that no cancel was requested'
);
select results_eq(
  $$select progress, progress_message from public.jobs where id = (select id from k where key = 'a')$$,
  $$values (40::smallint, 'step 2 of 5')$$,
  'and records progress and message on the row'
);
select throws_ok(
  $$select * from jobhook.heartbeat((select id from k where key = 'a'), 1, 101)$$,
  '22023', 'progress must be between 0 and 100, got 101', 'progress over 100 is refused'
);
select is_empty(
  $$select * from jobhook.heartbeat((select id from k where key = 'a'), 2, 50)$$,
  'a heartbeat for another attempt writes nothing'
);

-- complete
select ok(
  jobhook.complete((select id from k where key = 'a'), 1, '{"answer": 42}'),
  'complete succeeds for the current attempt'
);
select results_eq(
  $$select status::text, progress, result, lease_expires_at is null, finished_at is not null
      from public.jobs where id = (select id from k where key = 'a')$$,
  $$values ('completed', 100::smallint, '{"answer": 42}'::jsonb, true, true)$$,
  'a completed job has progress 100, its result, a finish time and no lease'
);
select ok(
  not jobhook.complete((select id from k where key = 'a'), 1, '{"again": true}'),
  'completing twice is refused'
);
select is(
  (select result from public.jobs where id = (select id from k where key = 'a')),
  '{"answer": 42}'::jsonb,
  'and leaves the first result'
);

-- fail, retryable: back to pending after a backoff, the error kept
select is(
  jobhook.fail((select id from k where key = 'b'), 1, 'connection reset', true, 'error')::text,
  'pending',
  'a retryable failure with attempts left goes back to pending'
);
select ok(
  (select run_at between now() + interval '1 second' and now() + interval '2 seconds'
     from public.jobs where id = (select id from k where key = 'b')),
  'run_at is pushed back by the backoff with jitter (base 2 s, attempt 1: 1 to 2 s)'
);
select results_eq(
  $$select error, errors -> 0 ->> 'message', (errors -> 0 ->> 'attempt')::int,
           errors -> 0 ->> 'kind', jsonb_array_length(errors)
      from public.jobs where id = (select id from k where key = 'b')$$,
  $$values ('connection reset', 'connection reset', 1, 'error', 1)$$,
  'the error is on the row and appended to errors with its attempt'
);
select is_empty(
  $$select * from jobhook.claim(array[(select id from k where key = 'b')], 'worker-1')$$,
  'a retry cannot be claimed before its backoff has passed'
);
select tests.clear_authentication();
update public.jobs set run_at = now() where id = (select id from k where key = 'b');
select tests.authenticate_as_service_role();
select results_eq(
  $$select attempt from jobhook.claim(array[(select id from k where key = 'b')], 'worker-1')$$,
  $$values (2)$$,
  'once due, the retry is claimed as attempt 2'
);
select is(
  jobhook.fail((select id from k where key = 'b'), 2, 'still down')::text, 'pending',
  'attempt 2 of 3 fails and retries'
);
select tests.clear_authentication();
update public.jobs set run_at = now() where id = (select id from k where key = 'b');
select tests.authenticate_as_service_role();
select lives_ok(
  $$select jobhook.claim(array[(select id from k where key = 'b')], 'worker-1')$$,
  'attempt 3 is claimed'
);
select is(
  jobhook.fail((select id from k where key = 'b'), 3, 'gave up')::text, 'failed',
  'the last attempt''s failure is final'
);
select results_eq(
  $$select status::text, jsonb_array_length(errors), finished_at is not null
      from public.jobs where id = (select id from k where key = 'b')$$,
  $$values ('failed', 3, true)$$,
  'a failed job keeps the error of every attempt'
);

-- fail, not retryable
select is(
  jobhook.fail((select id from k where key = 'c'), 1, 'steps: must be >= 1', false, 'invalid_parameters')::text,
  'failed',
  'a non-retryable failure is final at once'
);
select is(
  (select errors -> 0 ->> 'kind' from public.jobs where id = (select id from k where key = 'c')),
  'invalid_parameters',
  'with its kind recorded'
);
select results_eq(
  $$select jobhook.fail(id, 1, 'boom')::text from jobhook.claim(
      array[(select id from k where key = 'd')], 'worker-1')$$,
  $$values ('failed')$$,
  'a type with max_attempts 1 fails for good on its first retryable error'
);

-- cancel
select is(
  jobhook.cancel((select id from k where key = 'delayed'))::text, 'cancelled',
  'cancelling a pending job cancels it at once'
);
select ok(
  (select finished_at is not null and cancel_requested_at is not null from public.jobs
    where id = (select id from k where key = 'delayed')),
  'with a finish time and the request time'
);
select lives_ok(
  $$select jobhook.claim(array[(select id from k where key = 'e')], 'worker-1')$$,
  'e is claimed'
);
select is(
  jobhook.cancel((select id from k where key = 'e'))::text, 'processing',
  'cancelling a running job flags it and leaves it running'
);
select results_eq(
  $$select cancel_requested from jobhook.heartbeat((select id from k where key = 'e'), 1, 10)$$,
  $$values (true)$$,
  'the runner learns of it on its next heartbeat'
);
select is(
  jobhook.cancel((select id from k where key = 'e'), 1)::text, 'cancelled',
  'and acknowledges it: processing -> cancelled'
);
select is(
  jobhook.cancel((select id from k where key = 'e'))::text, null,
  'a finished job has nothing to cancel'
);
select jobhook.claim(array[(select id from k where key = 'g')], 'worker-1');
select jobhook.cancel((select id from k where key = 'g'));
select tests.authenticate_as('alice@example.com');
select throws_ok(
  $$update public.jobs set cancel_requested_at = null where id = (select id from k where key = 'g')$$,
  '22023', null, 'the owner cannot withdraw a cancel request'
);
select tests.authenticate_as_service_role();
select is(
  jobhook.fail((select id from k where key = 'g'), 1, 'interrupted')::text, 'cancelled',
  'a flagged job whose attempt fails ends cancelled, not retried'
);

-- The stale-attempt guard: a runner whose lease was taken over cannot write any more.
select lives_ok(
  $$select jobhook.claim(array[(select id from k where key = 'f')], 'old-runner')$$,
  'f is claimed by the old runner (attempt 1)'
);
select tests.clear_authentication();
update public.jobs set lease_expires_at = now() - interval '1 second'
 where id = (select id from k where key = 'f');
select jobhook.sweep();
update public.jobs set run_at = now() where id = (select id from k where key = 'f');
select tests.authenticate_as_service_role();
select results_eq(
  $$select attempt, worker_id from jobhook.claim(array[(select id from k where key = 'f')], 'new-runner')$$,
  $$values (2, 'new-runner')$$,
  'after the lease expired, a new runner claims attempt 2'
);
select ok(
  not jobhook.complete((select id from k where key = 'f'), 1, '{"stale": true}'),
  'the old runner''s complete is refused'
);
select is(
  jobhook.fail((select id from k where key = 'f'), 1, 'stale failure')::text, null,
  'its fail is refused'
);
select is_empty(
  $$select * from jobhook.heartbeat((select id from k where key = 'f'), 1, 99)$$,
  'its heartbeat is refused'
);
select results_eq(
  $$select status::text, attempt, progress, result, worker_id
      from public.jobs where id = (select id from k where key = 'f')$$,
  $$values ('processing', 2, 0::smallint, null::jsonb, 'new-runner')$$,
  'the new attempt is untouched'
);

-- The table itself refuses states that contradict the state machine.
select tests.clear_authentication();
select throws_ok(
  $$update public.jobs set status = 'completed', progress = 100
     where id = (select id from k where key = 'f')$$,
  '23514', null, 'completed without a finish time violates the status check'
);

select * from finish();
rollback;

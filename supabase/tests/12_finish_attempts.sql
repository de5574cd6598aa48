-- jobhook.finish_attempts: the one statement every attempt ends by, and the cancel transitions
-- under their own names. What each end writes, side by side, fenced on (id, attempt, status).
begin;
\ir helpers/setup.psql
select plan(14);

select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type, idempotency_key)
select 'sample_task', key
  from unnest(array['done', 'retry', 'released', 'stopped', 'unasked', 'stale', 'asked',
                    'both']) key;
select tests.authenticate_as_service_role();
create temp table k as select idempotency_key as key, id from public.jobs;
grant select on k to service_role;

select jobhook.claim(array(select id from k where key <> 'both'), 'worker-1');
select jobhook.request_cancel((select id from k where key = 'stopped'));

select results_eq(
  $$select k.key, f.status::text
      from jobhook.finish_attempts(array[
             row((select id from k where key = 'done'), 1, 'completed', '{"n": 1}', 'done',
                 null, null, null),
             row((select id from k where key = 'retry'), 1, 'failed', null, null, 'boom', true,
                 'error'),
             row((select id from k where key = 'released'), 1, 'released', null, null,
                 'released: shutting down', null, 'released'),
             row((select id from k where key = 'stopped'), 1, 'cancelled', null, null, null, null,
                 null),
             row((select id from k where key = 'unasked'), 1, 'cancelled', null, null, null, null,
                 null),
             row((select id from k where key = 'stale'), 2, 'completed', null, null, null, null,
                 null)
           ]::jobhook.finished_attempt[]) f
      join k on k.id = f.job_id
     order by k.key$$,
  $$values ('done', 'completed'), ('released', 'pending'), ('retry', 'pending'),
           ('stopped', 'cancelled')$$,
  'one statement ends many attempts, each its own way, and answers with the jobs it finished'
);
select results_eq(
  $$select status::text, progress, progress_message, result, error, worker_id, finished_at = now()
      from public.jobs where id = (select id from k where key = 'done')$$,
  $$values ('completed', 100::smallint, 'done', '{"n": 1}'::jsonb, null::text, 'worker-1', true)$$,
  'a completed attempt leaves the result, full progress, and the runner that finished it'
);
select results_eq(
  $$select error, errors -> 0 ->> 'kind', worker_id, run_at > now(), finished_at
      from public.jobs where id = (select id from k where key = 'retry')$$,
  $$values ('boom', 'error', null::text, true, null::timestamptz)$$,
  'a failed attempt records its error and waits out a backoff, no runner on the row'
);
select results_eq(
  $$select max_attempts, error, errors -> 0 ->> 'kind', run_at = now(), dispatched_at
      from public.jobs where id = (select id from k where key = 'released')$$,
  $$values (4, null::text, 'released', true, null::timestamptz)$$,
  'a released attempt costs nothing and is due at once'
);
select results_eq(
  $$select status::text, worker_id, jsonb_array_length(errors)
      from public.jobs where id = (select id from k where key = 'stopped')$$,
  $$values ('cancelled', 'worker-1', 0)$$,
  'a cancelled attempt ends the job without an error'
);
select results_eq(
  $$select status::text, attempt from public.jobs
     where id in (select id from k where key in ('unasked', 'stale')) order by attempt$$,
  $$values ('processing', 1), ('processing', 1)$$,
  'a cancel nobody asked for and an attempt that is not the job''s are left untouched'
);

-- The two cancel transitions, by name.
select is(
  jobhook.acknowledge_cancel((select id from k where key = 'asked'), 1), null,
  'a runner cannot acknowledge a cancel nobody asked for'
);
select is(
  jobhook.request_cancel((select id from k where key = 'asked')), 'processing'::public.job_status,
  'asking to cancel a running job flags it'
);
select is(
  jobhook.request_cancel((select id from k where key = 'asked')), null,
  'asking twice has nothing left to do'
);
select is(
  jobhook.acknowledge_cancel((select id from k where key = 'asked'), 2), null,
  'another attempt cannot acknowledge it'
);
select is(
  jobhook.acknowledge_cancel((select id from k where key = 'asked'), 1),
  'cancelled'::public.job_status,
  'its own attempt acknowledges it: processing -> cancelled'
);
select is(
  jobhook.request_cancel((select id from k where key = 'both')), 'cancelled'::public.job_status,
  'asking to cancel a pending job cancels it at once'
);

-- The sweep fails a pending job that will not start once, for the first reason that holds.
select tests.clear_authentication();
select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type, idempotency_key) values ('sample_task', 'undelivered-and-stuck');
select tests.clear_authentication();
update public.jobs
   set run_at = now() - interval '16 minutes', dispatched_at = now() - interval '61 seconds',
       dispatch_count = 5
 where idempotency_key = 'undelivered-and-stuck';
select is(
  jobhook.sweep() - 'rescued' - 'dispatched' - 'pruned' - 'history_pruned',
  '{"failed_undelivered": 1, "failed_not_started": 0, "deliveries_stalled": false}'::jsonb,
  'a job both undelivered and stuck is failed once, as undelivered'
);
select results_eq(
  $$select status::text, jsonb_array_length(errors), errors -> 0 ->> 'kind'
      from public.jobs where idempotency_key = 'undelivered-and-stuck'$$,
  $$values ('failed', 1, 'undelivered')$$,
  'with one entry in errors'
);

select * from finish();
rollback;

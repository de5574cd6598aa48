-- Enqueue checks and the signed doorbell: what an insert is refused for, and what it sends.
begin;
\ir helpers/setup.psql
select plan(29);

select tests.authenticate_as('alice@example.com');

-- Refused inserts, each with a message that names the problem; none leaves a row behind.
select throws_ok(
  $$insert into public.jobs (job_type) values ('retired_task')$$,
  '22023', 'job type "retired_task" is disabled', 'a disabled job type is refused by name'
);
select throws_ok(
  $$insert into public.jobs (job_type, payload) values ('sample_task', '[1, 2]')$$,
  '22023', 'payload must be a JSON object, got array', 'an array payload is refused'
);
select throws_ok(
  $$insert into public.jobs (job_type, payload) values ('sample_task', '"text"')$$,
  '22023', 'payload must be a JSON object, got string', 'a string payload is refused'
);
select throws_ok(
  $$insert into public.jobs (job_type, payload) values ('sample_task', null)$$,
  '22023', 'payload must be a JSON object, got null', 'a null payload is refused'
);
select throws_ok(
  $$insert into public.jobs (job_type, payload)
    values ('sample_task', jsonb_build_object('blob', repeat('x', 70000)))$$,
  '22023', 'payload is 70012 bytes, over the limit of 65536 bytes',
  'an oversized payload is refused with its size and the limit'
);
select throws_ok(
  $$insert into public.jobs (job_type, payload) values
    ('sample_task', '{"ok": true}'), ('no_such_type', '{}')$$,
  '22023', 'unknown job type "no_such_type"',
  'one bad row refuses the whole statement'
);
select is((select count(*)::int from public.jobs), 0, 'refused inserts wrote nothing');
select is(
  (select count(*)::int from net.http_request_queue), 0, 'refused inserts queued no request'
);

-- The per-user quota on unfinished jobs.
select tests.clear_authentication();
update jobhook.settings set max_unfinished_per_user = 3;
select tests.authenticate_as('alice@example.com');
select lives_ok(
  $$insert into public.jobs (job_type) select 'sample_task' from generate_series(1, 3)$$,
  'inserts up to the quota are accepted'
);
select throws_ok(
  $$insert into public.jobs (job_type) values ('sample_task')$$,
  'PT429', 'too many unfinished jobs: 4 pending or processing, the limit is 3',
  'one more is refused with the count and the limit'
);
select tests.authenticate_as('bob@example.com');
select lives_ok(
  $$insert into public.jobs (job_type) values ('sample_task')$$,
  'the quota is per user'
);
select tests.clear_authentication();
select lives_ok(
  $$insert into public.jobs (job_type) select 'sample_task' from generate_series(1, 5)$$,
  'trusted backends (bypassing RLS) are not limited'
);
update jobhook.settings set max_unfinished_per_user = 1000;
delete from public.jobs;
delete from net.http_request_queue;

-- A job type's own limit, checked after the global one, and without the settings row too.
update jobhook.job_types set max_unfinished_per_user = 2 where name = 'sample_task';
select tests.authenticate_as('alice@example.com');
select throws_ok(
  $$insert into public.jobs (job_type) select 'sample_task' from generate_series(1, 3)$$,
  'PT429', 'too many unfinished "sample_task" jobs: 3 pending or processing, the limit is 2',
  'a type''s own limit is refused by the type''s name, with the count and the limit'
);
select tests.clear_authentication();
create temporary table saved_settings as select * from jobhook.settings;
delete from jobhook.settings;
select tests.authenticate_as('alice@example.com');
select throws_ok(
  $$insert into public.jobs (job_type) select 'sample_task' from generate_series(1, 3)$$,
  'PT429', 'too many unfinished "sample_task" jobs: 3 pending or processing, the limit is 2',
  'and it holds should the settings row be missing'
);
select tests.clear_authentication();
insert into jobhook.settings select * from saved_settings;
update jobhook.job_types set max_unfinished_per_user = null where name = 'sample_task';

-- A client cannot forge state: whatever it could send, a new job starts pending and clean.
select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type, payload, idempotency_key)
values ('sample_task', '{"steps": 2}', 'fresh');
select tests.clear_authentication();
select results_eq(
  $$select status::text, attempt, max_attempts, progress, dispatch_count
      from public.jobs where idempotency_key = 'fresh'$$,
  $$values ('pending', 0, 3, 0::smallint, 1)$$,
  'a new job is pending, attempt 0, with its type''s max_attempts, dispatched once'
);

-- The doorbell: one signed request for the statement, carrying ids and types only.
select is((select count(*)::int from net.http_request_queue), 1, 'one request for one insert');
select is(
  (select url from net.http_request_queue),
  (select decrypted_secret from vault.decrypted_secrets where name = 'jobhook_webhook_url'),
  'sent to the URL in Vault'
);
select is(
  (select convert_from(body, 'UTF8')::jsonb from net.http_request_queue),
  jsonb_build_object('type', 'jobs.dispatch', 'jobs', jsonb_build_array(jsonb_build_object(
    'id', (select id from public.jobs where idempotency_key = 'fresh'),
    'job_type', 'sample_task'))),
  'the body names the job and its type, nothing else'
);
select is(
  (select headers ->> 'webhook-signature' from net.http_request_queue),
  jobhook.sign_webhook(
    (select decrypted_secret from vault.decrypted_secrets where name = 'jobhook_webhook_secret'),
    (select headers ->> 'webhook-id' from net.http_request_queue),
    (select (headers ->> 'webhook-timestamp')::bigint from net.http_request_queue),
    (select convert_from(body, 'UTF8') from net.http_request_queue)),
  'the signature covers id, timestamp and the exact body bytes'
);
select is(
  (select timeout_milliseconds from net.http_request_queue),
  (select dispatch_timeout_ms from jobhook.settings),
  'with the configured timeout'
);
delete from net.http_request_queue;

-- A bulk insert of 1,200 jobs rings three times (500 per request), not 1,200 times.
insert into public.jobs (job_type, payload)
select 'sample_task', jsonb_build_object('n', n) from generate_series(1, 1200) n;
select is((select count(*)::int from net.http_request_queue), 3, '1,200 jobs, three requests');
select is(
  (select sum(jsonb_array_length(convert_from(body, 'UTF8')::jsonb -> 'jobs'))::int
     from net.http_request_queue),
  1200,
  'carrying every job once'
);
delete from net.http_request_queue;

-- Delayed jobs are not rung now; the sweep rings them when due.
insert into public.jobs (job_type, run_at, idempotency_key)
values ('sample_task', now() + interval '1 hour', 'later');
select is((select count(*)::int from net.http_request_queue), 0, 'a delayed job is not sent yet');
select results_eq(
  $$select dispatch_count, dispatched_at from public.jobs where idempotency_key = 'later'$$,
  $$values (0, null::timestamptz)$$,
  'and is recorded as not dispatched'
);

-- Without the Vault secrets, jobs are still accepted and wait, counted as never delivered.
delete from vault.secrets where name = 'jobhook_webhook_secret';
select lives_ok(
  $$insert into public.jobs (job_type, idempotency_key) values ('sample_task', 'no-secret')$$,
  'an insert succeeds while the signing secret is missing'
);
select is((select count(*)::int from net.http_request_queue), 0, 'and sends nothing unsigned');
select tests.clear_authentication();
select results_eq(
  $$select dispatch_count, dispatched_at from public.jobs where idempotency_key = 'no-secret'$$,
  $$values (0, null::timestamptz)$$,
  'a job whose doorbell could not ring is not counted as delivered'
);
update jobhook.settings set max_dispatches = 1, redispatch_after_seconds = 5;
select jobhook.sweep();
select jobhook.sweep();
select is(
  (select status::text from public.jobs where idempotency_key = 'no-secret'), 'pending',
  'so the sweep does not fail it as undeliverable while Vault is unconfigured'
);

-- A run_at in the past means now.
select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type, idempotency_key, run_at)
values ('sample_task', 'past', now() - interval '1 day');
select tests.clear_authentication();
select is(
  (select run_at from public.jobs where idempotency_key = 'past'), now(),
  'a run_at in the past is moved to now'
);

select * from finish();
rollback;

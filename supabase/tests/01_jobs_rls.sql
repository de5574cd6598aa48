-- Row-level security and column grants on public.jobs: what a client may and may not do.
begin;
\ir helpers/setup.psql
select plan(24);

select ok(
  (select relrowsecurity from pg_class where oid = 'public.jobs'::regclass),
  'public.jobs has row-level security enabled'
);

-- Alice enqueues through the API roles, as supabase-js would.
select tests.authenticate_as('alice@example.com');
select lives_ok(
  $$insert into public.jobs (job_type, payload, idempotency_key)
    values ('sample_task', '{"steps": 1}', 'alice-1')$$,
  'an authenticated user can insert a job'
);
select is(
  (select user_id from public.jobs where idempotency_key = 'alice-1'),
  tests.user_id('alice@example.com'),
  'user_id defaults to auth.uid()'
);
select is((select count(*)::int from public.jobs), 1, 'alice sees her job');

-- Writing columns that belong to the system is refused by the column grants.
select throws_ok(
  $$insert into public.jobs (job_type, status) values ('sample_task', 'completed')$$,
  '42501', null, 'a client cannot insert status'
);
select throws_ok(
  $$insert into public.jobs (job_type, result) values ('sample_task', '{"forged": true}')$$,
  '42501', null, 'a client cannot insert result'
);
select throws_ok(
  format($$insert into public.jobs (job_type, user_id) values ('sample_task', %L)$$,
         tests.user_id('bob@example.com')),
  '42501', null, 'a client cannot insert a job for another user'
);
select throws_ok(
  $$update public.jobs set status = 'completed' where idempotency_key = 'alice-1'$$,
  '42501', null, 'a client cannot update status'
);
select throws_ok(
  $$update public.jobs set result = '{"forged": true}' where idempotency_key = 'alice-1'$$,
  '42501', null, 'a client cannot update result'
);
select throws_ok(
  format($$update public.jobs set user_id = %L where idempotency_key = 'alice-1'$$,
         tests.user_id('bob@example.com')),
  '42501', null, 'a client cannot hand a job to another user'
);
select throws_ok(
  $$update public.jobs set progress = 100 where idempotency_key = 'alice-1'$$,
  '42501', null, 'a client cannot update progress'
);
select throws_ok(
  $$delete from public.jobs where idempotency_key = 'alice-1'$$,
  '42501', null, 'a client cannot delete a job'
);
select throws_ok(
  $$select jobhook.complete(id, 1, '{}') from public.jobs$$,
  '42501', null, 'a client cannot call the transition functions'
);

-- Bob can neither see, cancel nor alter Alice's job.
select tests.authenticate_as('bob@example.com');
select is_empty($$select * from public.jobs$$, 'bob does not see alice''s job');
select is_empty(
  $$update public.jobs set cancel_requested_at = now() returning id$$,
  'bob cannot cancel alice''s job (no row matches)'
);
select throws_ok(
  $$insert into public.jobs (job_type) values ('no_such_type')$$,
  '22023', 'unknown job type "no_such_type"', 'an unknown job type is refused by name'
);

-- anon has no access at all.
select tests.authenticate_as_anon();
select throws_ok(
  $$insert into public.jobs (job_type) values ('sample_task')$$,
  '42501', null, 'anon cannot insert'
);
select throws_ok($$select * from public.jobs$$, '42501', null, 'anon cannot read');

select tests.clear_authentication();
select is(
  (select status::text from public.jobs where idempotency_key = 'alice-1'),
  'pending',
  'after all of that, alice''s job is still pending'
);
select is(
  (select cancel_requested_at from public.jobs where idempotency_key = 'alice-1'),
  null,
  'and has no cancel request'
);

-- Alice may cancel her own job, and only by setting cancel_requested_at.
select tests.authenticate_as('alice@example.com');
select results_eq(
  $$update public.jobs set cancel_requested_at = now() where idempotency_key = 'alice-1'
    returning status::text$$,
  $$values ('cancelled')$$,
  'the owner cancels her pending job'
);
select is_empty(
  $$update public.jobs set cancel_requested_at = now() where idempotency_key = 'alice-1'
    returning id$$,
  'a finished job cannot be cancelled again (no row matches)'
);

-- Idempotency: a retried insert with the same key does not create a second job.
select throws_ok(
  $$insert into public.jobs (job_type, idempotency_key) values ('sample_task', 'alice-1')$$,
  '23505', null, 'a second insert with the same idempotency key conflicts'
);
select lives_ok(
  $$insert into public.jobs (job_type, idempotency_key) values ('sample_task', 'alice-1')
    on conflict (user_id, job_type, idempotency_key) do nothing$$,
  'and is a no-op with on conflict do nothing (supabase-js upsert ignoreDuplicates)'
);

select * from finish();
rollback;

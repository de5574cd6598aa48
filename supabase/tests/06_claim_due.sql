-- claim_due: a runner taking back, once it has room, the due jobs it turned away.
begin;
\ir helpers/setup.psql
select plan(12);

select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type, idempotency_key) values
  ('sample_task', 'third'), ('sample_task', 'second'), ('sample_task', 'first'),
  ('one_shot', 'other type'), ('sample_task', 'cancelled');
insert into public.jobs (job_type, idempotency_key, run_at)
values ('sample_task', 'not due', now() + interval '1 hour');
update public.jobs set cancel_requested_at = now() where idempotency_key = 'cancelled';
select tests.clear_authentication();

-- Inserted in one transaction they share run_at; spread them against the order of insertion,
-- so that only an ordered claim takes them oldest first.
update public.jobs set run_at = now() - interval '1 minute' where idempotency_key = 'third';
update public.jobs set run_at = now() - interval '2 minutes' where idempotency_key = 'second';
update public.jobs set run_at = now() - interval '3 minutes' where idempotency_key = 'first';

select tests.authenticate_as_service_role();
select results_eq(
  $$select idempotency_key, status::text, attempt, worker_id
      from jobhook.claim_due(array['sample_task'], 2, 'worker-1')
     order by run_at$$,
  $$values ('first', 'processing', 1, 'worker-1'), ('second', 'processing', 1, 'worker-1')$$,
  'claim_due takes the oldest due jobs of the type, no more than asked, as claim does'
);
select results_eq(
  $$select idempotency_key from jobhook.claim_due(array['sample_task'], 10, 'worker-1')$$,
  $$values ('third')$$,
  'then the rest: never a job already processing, one not yet due, or one cancelled'
);
select is_empty(
  $$select * from jobhook.claim_due(array['sample_task'], 10, 'worker-1')$$,
  'nothing is left to take'
);
-- One owner waiting is served by a shortcut; more owners take turns. Jobs without a user are an
-- owner of their own.
insert into public.jobs (job_type, idempotency_key, user_id) values
  ('sample_task', 'nobody''s newer', null), ('sample_task', 'nobody''s older', null);
update public.jobs set run_at = now() - interval '1 minute'
 where idempotency_key = 'nobody''s older';
select results_eq(
  $$select idempotency_key from jobhook.claim_due(array['sample_task'], 1, 'worker-1')$$,
  $$values ('nobody''s older')$$,
  'with only jobs without a user waiting, the oldest of them'
);
select tests.clear_authentication();
select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type, idempotency_key) values ('sample_task', 'alice''s');
select tests.clear_authentication();
select tests.authenticate_as_service_role();
-- The job without a user is the older: a claim by age alone would take it first.
update public.jobs set run_at = now() - interval '1 hour'
 where idempotency_key = 'nobody''s newer';
select results_eq(
  $$select idempotency_key from jobhook.claim_due(array['sample_task'], 1, 'worker-1')$$,
  $$values ('alice''s')$$,
  'with a user waiting too, turns: the users first, though the job without a user is older'
);
select results_eq(
  $$select idempotency_key from jobhook.claim_due(array['sample_task'], 5, 'worker-1')$$,
  $$values ('nobody''s newer')$$,
  'and then the jobs without a user'
);
select results_eq(
  $$select idempotency_key from jobhook.claim_due(array['one_shot', 'retired_task'], 10, 'w')$$,
  $$values ('other type')$$,
  'only the types asked for'
);
-- Without caps claim_due writes its claims itself, in one update: the same row claim writes,
-- column for column, by the one-owner shortcut and by the turns.
prepare claimed_row (text) as
  select status::text, attempt, worker_id, progress, progress_message, dispatch_count,
         started_at, updated_at, lease_expires_at
    from public.jobs where idempotency_key = $1;
select tests.clear_authentication();
select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type, idempotency_key) values
  ('sample_task', 'alice: by claim_due'), ('sample_task', 'alice: by claim');
select tests.clear_authentication();
select tests.authenticate_as_service_role();
update public.jobs set run_at = now() - interval '1 minute'
 where idempotency_key = 'alice: by claim_due';
select jobhook.claim(array(select id from public.jobs where idempotency_key = 'alice: by claim'), 'w');
select jobhook.claim_due(array['sample_task'], 1, 'w');
select results_eq(
  $$execute claimed_row('alice: by claim_due')$$, $$execute claimed_row('alice: by claim')$$,
  'with one owner waiting, claim_due writes the row claim writes'
);
select tests.clear_authentication();
select tests.authenticate_as('bob@example.com');
insert into public.jobs (job_type, idempotency_key) values ('sample_task', 'bob: by claim_due');
select tests.clear_authentication();
select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type, idempotency_key) values ('sample_task', 'alice: by claim, again');
select tests.clear_authentication();
select tests.authenticate_as_service_role();
select jobhook.claim(
  array(select id from public.jobs where idempotency_key = 'alice: by claim, again'), 'w');
select jobhook.claim_due(array['sample_task'], 5, 'w');
select results_eq(
  $$execute claimed_row('bob: by claim_due')$$, $$execute claimed_row('alice: by claim, again')$$,
  'and so it does when users take turns'
);
select throws_ok(
  $$select * from jobhook.claim_due(array['sample_task'], 0, 'worker-1')$$,
  '22023',
  'max_jobs must be at least 1, got 0',
  'a limit below 1 is refused, naming the value'
);
select tests.clear_authentication();

select ok(
  has_function_privilege('service_role', 'jobhook.claim_due(text[], integer, text)', 'execute'),
  'service_role may call claim_due'
);
select ok(
  not has_function_privilege('authenticated', 'jobhook.claim_due(text[], integer, text)', 'execute'),
  'authenticated may not'
);

select * from finish();
rollback;

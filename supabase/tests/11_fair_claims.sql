-- Claims are fair across users: claim_due serves users in turn, and a type may cap how many of
-- one user's jobs run at once.
begin;
\ir helpers/setup.psql
select plan(10);

select tests.create_user('carol@example.com');
select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type) select 'sample_task' from generate_series(1, 10);
select tests.authenticate_as('bob@example.com');
insert into public.jobs (job_type) values ('sample_task');
select tests.authenticate_as('carol@example.com');
insert into public.jobs (job_type) values ('sample_task');
select tests.clear_authentication();
-- Alice's jobs are the oldest: a first-in, first-out claim would take only hers.
update public.jobs set run_at = now() - interval '1 minute'
 where user_id = tests.user_id('alice@example.com');

select results_eq(
  $$select user_id, count(*)::int from jobhook.claim_due(array['sample_task'], 3, 'w')
     group by user_id order by user_id$$,
  $$select u, 1 from unnest(array[tests.user_id('alice@example.com'),
                                  tests.user_id('bob@example.com'),
                                  tests.user_id('carol@example.com')]) u order by u$$,
  'three slots go to three users, one each, though one user''s jobs are older'
);
select is(
  (select count(*)::int from jobhook.claim_due(array['sample_task'], 4, 'w')), 4,
  'room left over goes to whoever still has jobs waiting'
);
update public.jobs set status = 'pending', attempt = 0, started_at = null, lease_expires_at = null,
                       worker_id = null, dispatch_count = 0
 where status = 'processing';

-- A cap of two running jobs per user.
update jobhook.job_types set max_running_per_user = 2 where name = 'sample_task';
select is(
  (select count(*)::int from jobhook.claim_due(array['sample_task'], 100, 'w')
    where user_id = tests.user_id('alice@example.com')),
  2, 'a capped type runs at most max_running_per_user of one user''s jobs'
);
select is(
  (select count(*)::int from public.jobs where status = 'processing'), 4,
  'while the other users'' jobs run beside them'
);
select is_empty(
  $$select * from jobhook.claim(array(select id from public.jobs
      where user_id = tests.user_id('alice@example.com') and status = 'pending'), 'w')$$,
  'a doorbell for more of that user''s jobs claims none of them while the user is at the cap'
);
select is(
  (select count(*)::int from public.jobs
    where user_id = tests.user_id('alice@example.com') and status = 'pending'),
  8, 'they stay pending, for a later claim'
);
select jobhook.complete(id, attempt) from public.jobs
 where user_id = tests.user_id('alice@example.com') and status = 'processing'
 limit 1;
select is(
  (select count(*)::int from jobhook.claim(array(select id from public.jobs
      where user_id = tests.user_id('alice@example.com') and status = 'pending'), 'w')),
  1, 'once one finishes, one more starts'
);
-- Alice's waiting jobs were delivered long ago, and more than stuck_timeout ago due: they wait
-- for her cap, not for a runner, and the sweep leaves them be.
update public.jobs
   set dispatch_count = 5, dispatched_at = now() - interval '1 hour',
       run_at = now() - interval '1 hour'
 where user_id = tests.user_id('alice@example.com') and status = 'pending';
select is(
  (jobhook.sweep() ->> 'failed_undelivered')::int, 0,
  'jobs waiting for their user''s cap are not failed as undelivered'
);
select is(
  (select count(*)::int from public.jobs
    where user_id = tests.user_id('alice@example.com') and status = 'pending'),
  7, 'nor as not started'
);
select throws_ok(
  $$select * from jobhook.claim_due(array['sample_task'], 0, 'w')$$,
  '22023', 'max_jobs must be at least 1, got 0', 'max_jobs is checked'
);

select * from finish();
rollback;

-- While pg_net is not sending, the sweep neither counts nor fails deliveries that never left the
-- database; it prunes its own pg_cron history; its lock is a row no client can take.
begin;
\ir helpers/setup.psql
select plan(11);

select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type, idempotency_key)
select 'sample_task', key from unnest(array['lost', 'undeliverable', 'stuck']) key;
select tests.clear_authentication();
create temp table k as select idempotency_key as key, id from public.jobs;

-- pg_net's worker is down: what the inserts queued is still there, and was already there when
-- the previous sweep looked, two minutes ago.
update jobhook.locks
   set queue_mark = (select max(id) from net.http_request_queue),
       -- 40 s: more than half the redispatch interval (60 s), as pg_cron's next minute is
       marked_at = now() - interval '40 seconds'
 where name = 'sweep';
update public.jobs
   set run_at = now() - interval '2 minutes', dispatched_at = now() - interval '61 seconds',
       dispatch_count = 1
 where id = (select id from k where key = 'lost');
update public.jobs
   set run_at = now() - interval '2 minutes', dispatched_at = now() - interval '61 seconds',
       dispatch_count = 5
 where id = (select id from k where key = 'undeliverable');
update public.jobs set run_at = now() - interval '16 minutes', dispatched_at = now() - interval '16 minutes'
 where id = (select id from k where key = 'stuck');

select is(
  jobhook.sweep() - 'history_pruned',
  '{"rescued": 0, "failed_undelivered": 0, "failed_not_started": 1, "dispatched": 0,
    "pruned": 0, "deliveries_stalled": true}'::jsonb,
  'the sweep sees that pg_net is not sending'
);
select results_eq(
  $$select status::text, dispatch_count from public.jobs
     where id in (select id from k where key in ('lost', 'undeliverable')) order by dispatch_count$$,
  $$values ('pending', 1), ('pending', 5)$$,
  'it neither rings lost jobs again (counting a delivery that cannot happen) nor fails them'
);
select matches(
  (select error from public.jobs where id = (select id from k where key = 'stuck')),
  '^not started within 15 minutes of being due: pg_net has sent nothing for over 60 s and 1 request\(s\) wait in its queue; check that its worker is running',
  'a job that waited too long says what held it up'
);

-- The worker is back and has drained the queue.
delete from net.http_request_queue;
select is(
  (jobhook.sweep() ->> 'deliveries_stalled')::boolean, false, 'with the queue drained, it is not'
);
select is(
  (select status::text from public.jobs where id = (select id from k where key = 'undeliverable')),
  'failed', 'and a job delivered max_dispatches times is failed as undeliverable again'
);
select is(
  (select dispatch_count from public.jobs where id = (select id from k where key = 'lost')), 2,
  'and a lost delivery rings again, counted'
);

-- A request queued just before a sweep is not a stall: the mark it is judged by is the last one
-- taken a redispatch interval ago.
select jobhook.dispatch(jsonb_build_array(jsonb_build_object('id', gen_random_uuid(), 'job_type', 'sample_task')));
update jobhook.locks set marked_at = now() - interval '2 minutes' where name = 'sweep';
select is(
  (jobhook.sweep() ->> 'deliveries_stalled')::boolean, false,
  'requests newer than the mark do not count as waiting'
);

-- pg_cron's history of the sweep, pruned after retention_days; other jobs' history is theirs.
select cron.schedule('someone-elses', '0 3 * * *', 'select 1');
-- With run ids of their own: postgres may write pg_cron's tables but not use its sequences
-- (supabase/postgres ansible/files/postgresql_extension_custom_scripts/pg_cron/after-create.sql).
insert into cron.job_run_details (runid, jobid, job_pid, database, username, command, status, start_time, end_time)
select 1000000 + row_number() over (), c.jobid, 1, 'postgres', 'postgres', c.command, 'succeeded', t, t
  from cron.job c, (values (now() - interval '40 days'), (now() - interval '1 day')) v (t)
 where c.jobname in ('jobhook-sweep', 'someone-elses');
select is((jobhook.sweep() ->> 'history_pruned')::int, 1, 'the sweep prunes its own old runs');
select is(
  (select count(*)::int from cron.job_run_details d join cron.job c using (jobid)
    where c.jobname = 'someone-elses'),
  2, 'and no other job''s'
);

-- No client can take the sweep's lock, or a user's quota lock.
select tests.authenticate_as('bob@example.com');
select throws_ok(
  $$select * from jobhook.locks for update$$, '42501', null,
  'a client cannot lock the sweep''s row'
);
select throws_ok(
  $$select * from jobhook.quota_locks for update$$, '42501', null,
  'nor a user''s quota row'
);
select tests.clear_authentication();

select * from finish();
rollback;

-- What PostgreSQL stores but the runner could not read is refused at insert, so one user's
-- payload or run_at can never break a claim or a dispatch that other users' jobs share.
begin;
\ir helpers/setup.psql
select plan(13);
set local timezone = 'UTC';

select tests.authenticate_as('alice@example.com');

select throws_ok(
  $$insert into public.jobs (job_type, payload) values ('sample_task', '{"x": 1e5000}')$$,
  '22023', 'payload holds an integer of more than 4300 digits, which the runner cannot read',
  'an integer Python would refuse to parse (over 4300 digits) is refused'
);
select lives_ok(
  format($$insert into public.jobs (job_type, payload) values ('sample_task', '{"x": -%s}')$$,
         '9' || repeat('0', 4299)),
  'an integer of exactly 4300 digits is accepted'
);
select throws_ok(
  format($$insert into public.jobs (job_type, payload) values ('sample_task', '{"x": 1%s.5}')$$,
         repeat('0', 400)),
  '22023',
  'payload holds a number beyond the range of a double (about 1.8e308), which the runner cannot read',
  'a fraction Python would read as infinity is refused'
);
select lives_ok(
  $$insert into public.jobs (job_type, payload) values ('sample_task', '{"x": 1.7976931348623157e308}')$$,
  'the largest double is accepted'
);
select throws_ok(
  format($$insert into public.jobs (job_type, payload) values ('sample_task', '{"x": %s%s}')$$,
         repeat('[', 200), repeat(']', 200)),
  '22023', 'payload is nested more than 200 levels deep, which the runner cannot read',
  '201 levels of nesting are refused'
);
select throws_ok(
  format($$insert into public.jobs (job_type, payload) values ('sample_task', '%s1%s')$$,
         repeat('{"a": ', 201), repeat('}', 201)),
  '22023', 'payload is nested more than 200 levels deep, which the runner cannot read',
  'in objects too'
);
select lives_ok(
  format($$insert into public.jobs (job_type, payload) values ('sample_task', '{"x": %s%s}')$$,
         repeat('[', 199), repeat(']', 199)),
  '200 levels are accepted'
);
select throws_ok(
  $$insert into public.jobs (job_type, payload) values
    ('sample_task', '{}'), ('sample_task', '{"x": 1e5000}')$$,
  '22023', 'payload holds an integer of more than 4300 digits, which the runner cannot read',
  'one unreadable payload refuses its whole statement'
);

select throws_ok(
  $$insert into public.jobs (job_type, run_at) values ('sample_task', 'infinity')$$,
  '22023', 'run_at must be a time before 9999-12-30 00:00:00+00, got infinity',
  'an infinite run_at is refused'
);
select throws_ok(
  $$insert into public.jobs (job_type, run_at) values ('sample_task', '-infinity')$$,
  '22023', 'run_at must be a time before 9999-12-30 00:00:00+00, got -infinity',
  'so is minus infinity'
);
select throws_ok(
  $$insert into public.jobs (job_type, run_at) values ('sample_task', '10000-01-01')$$,
  '22023', 'run_at must be a time before 9999-12-30 00:00:00+00, got 10000-01-01 00:00:00+00',
  'and a run_at past what the runtime can represent'
);
select tests.clear_authentication();
select is((select count(*)::int from public.jobs), 3, 'only the readable jobs were stored');

-- What the every-second dispatch runs keeps working for everyone.
select lives_ok($$select jobhook.dispatch_due()$$, 'dispatch_due runs');

select * from finish();
rollback;

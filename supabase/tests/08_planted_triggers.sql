-- pg_net grants its tables to PUBLIC, TRIGGER included (sql/pg_net.sql, its last lines), so any
-- client role can attach a trigger to net.http_request_queue. Code that runs inside jobhook's
-- functions could change session settings that the security definer callers then run under, so
-- jobhook.ring queues nothing while such a trigger exists: whatever path rings (a client's
-- insert, the sweep, the every-second dispatch), the planted code never runs.
begin;
\ir helpers/setup.psql
select plan(12);

-- What a planted trigger would do: note who it runs as and what it can read, and plant a
-- search_path for whatever runs after it in the session.
create schema evil;
grant usage on schema evil to public;
create table evil.log (ran_as text, vault text);
grant insert on evil.log to public;
create function evil.spy() returns trigger
language plpgsql
as $$
declare
  secret text;
begin
  begin
    select string_agg(decrypted_secret, ',') into secret from vault.decrypted_secrets;
  exception when insufficient_privilege then
    secret := 'permission denied';
  end;
  insert into evil.log values (current_user, secret);
  perform set_config('search_path', 'evil, pg_catalog', false);
  return new;
end;
$$;
-- Handing the function to a client role needs, for that role, CREATE on the schema (the test
-- runs as postgres, which is no superuser, on hosted Supabase as on the dev stack).
grant create on schema evil to authenticated;
alter function evil.spy() owner to authenticated;

select tests.authenticate_as('bob@example.com');
select lives_ok(
  $$create trigger spy after insert on net.http_request_queue
      for each row execute function evil.spy()$$,
  'a client can attach a trigger to pg_net''s queue (upstream grants it)'
);
select tests.clear_authentication();

select is(jobhook.foreign_queue_triggers(), array['spy'], 'jobhook sees the planted trigger');

-- A client's insert.
select tests.authenticate_as('alice@example.com');
select lives_ok(
  $$insert into public.jobs (job_type, idempotency_key) values ('sample_task', 'planted')$$,
  'inserts still succeed'
);
select tests.clear_authentication();
select is((select count(*)::int from evil.log), 0, 'the planted trigger never ran');
select is((select count(*)::int from net.http_request_queue), 0, 'and no doorbell was queued');
select results_eq(
  $$select dispatch_count, dispatched_at from public.jobs where idempotency_key = 'planted'$$,
  $$values (0, null::timestamptz)$$,
  'the job counts as never delivered, and waits'
);
select is(current_setting('search_path'), 'public, extensions', 'the session''s settings are untouched');

-- The sweep and the every-second dispatch ring as the database owner's jobs (pg_cron, the app).
select is(jobhook.dispatch_due(), 1, 'dispatch_due picks the job');
select ok(
  (jobhook.sweep() ->> 'skipped') is null, 'the sweep runs'
);
select is((select count(*)::int from evil.log), 0, 'and the planted trigger never ran there either');

-- Once it is gone, doorbells ring again. DROP TRIGGER needs the table's owner, supabase_admin,
-- which postgres is not (on hosted Supabase neither); dropping the trigger's function with
-- CASCADE, as a member of the function's owner, takes the trigger with it.
drop function evil.spy() cascade;
update public.jobs set dispatched_at = null, dispatch_count = 0;
select is(jobhook.dispatch_due(), 1, 'without it, the doorbell rings');
select is((select count(*)::int from net.http_request_queue), 1, 'and is queued');

select * from finish();
rollback;

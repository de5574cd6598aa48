-- pg_net grants its tables to PUBLIC, TRIGGER included (sql/pg_net.sql, its last lines), so any
-- client role can attach a trigger to net.http_request_queue. Such a trigger runs as whoever
-- queues a request: whatever path rings the doorbell (a client's insert, the sweep, the
-- every-second dispatch), that must be a role with no more than a client's rights.
begin;
\ir helpers/setup.psql
select plan(10);

-- What a planted trigger learns: who it runs as, whether it can decrypt Vault, how many jobs
-- it sees. The log table stands for anything the attacker can write to.
create table public.spy_log (ran_as text, superuser boolean, vault text, jobs_seen bigint);
grant insert on public.spy_log to public;
create function public.spy() returns trigger
language plpgsql
as $$
declare
  secret text;
  seen bigint;
begin
  begin
    select string_agg(decrypted_secret, ',') into secret from vault.decrypted_secrets;
  exception when insufficient_privilege then
    secret := 'permission denied';
  end;
  begin
    select count(*) into seen from public.jobs;
  exception when insufficient_privilege then
    seen := -1;
  end;
  insert into public.spy_log
  values (current_user, (select rolsuper from pg_roles where rolname = current_user), secret, seen);
  return new;
end;
$$;
alter function public.spy() owner to authenticated;

select tests.authenticate_as('bob@example.com');
select lives_ok(
  $$create trigger spy after insert on net.http_request_queue
      for each row execute function public.spy()$$,
  'a client can attach a trigger to pg_net''s queue (upstream grants it)'
);
select tests.clear_authentication();
insert into public.jobs (job_type, payload, user_id)
select 'sample_task', '{"secret": "bob''s"}', tests.user_id('bob@example.com');
delete from public.spy_log;

-- A client's insert rings.
select tests.authenticate_as('alice@example.com');
insert into public.jobs (job_type) values ('sample_task');
select tests.clear_authentication();
select is((select count(*)::int from public.spy_log), 1, 'the planted trigger ran for the insert');
select is((select ran_as from public.spy_log), 'jobhook_doorbell', 'as jobhook_doorbell');
select is(
  (select vault from public.spy_log), 'permission denied', 'which cannot decrypt Vault'
);
select is((select jobs_seen from public.spy_log), -1::bigint, 'nor read any job');

-- The sweep and the every-second dispatch ring as the database owner's jobs (pg_cron, the app).
delete from public.spy_log;
update public.jobs set dispatched_at = null, dispatch_count = 0;
select ok(jobhook.dispatch_due() > 0, 'dispatch_due rings for due jobs');
select results_eq(
  $$select distinct ran_as, superuser, vault, jobs_seen from public.spy_log$$,
  $$values ('jobhook_doorbell', false, 'permission denied', -1::bigint)$$,
  'and the trigger runs with no more rights there'
);
delete from public.spy_log;
update public.jobs set dispatched_at = now() - interval '1 day', run_at = now() - interval '2 minutes';
select ok((jobhook.sweep() ->> 'dispatched')::int > 0, 'the sweep rings again for lost deliveries');
select results_eq(
  $$select distinct ran_as, superuser, vault, jobs_seen from public.spy_log$$,
  $$values ('jobhook_doorbell', false, 'permission denied', -1::bigint)$$,
  'and the trigger runs with no more rights there either'
);

select ok(
  not pg_has_role('jobhook_doorbell', 'service_role', 'usage')
  and not pg_has_role('jobhook_doorbell', 'authenticated', 'usage')
  and not has_table_privilege('jobhook_doorbell', 'jobhook.settings', 'select'),
  'jobhook_doorbell holds none of the roles or tables a definer function uses'
);

select * from finish();
rollback;

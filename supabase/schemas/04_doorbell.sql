-- The doorbell: one signed request to the runtime's webhook per 500 due jobs, and under load
-- one for many inserts.
--
-- The webhook is a doorbell, not a delivery guarantee: pg_net sends once, after commit, without
-- retries, so a lost ring only delays a job (the sweep rings again, 07_sweep.sql).
--
-- A ring tells the runners to drain: they claim due jobs of its types until none are left, not
-- only the ids it names. So an insert need not ring when another rang a moment ago, and inserts
-- share doorbells past settings.max_doorbells_per_second (pg_net's pace is about 200 a
-- second; beyond it requests time out, supabase/pg_net issue 179). An insert rings when it can
-- take the doorbell's turn (jobhook.take_doorbell_turn): at a few jobs a second, every insert;
-- under load, one per interval, whoever comes first. Taking the turn never waits. A job whose
-- insert did not ring, and that no drain has claimed a second later (its ringer rolled back, or
-- committed before it and the drain ran dry first), is rung for by jobhook.dispatch_due, which
-- the runtime calls every second.
--
-- Requests are queued in pg_net by a role with a client's rights only, and never while a trigger
-- sits on its queue. pg_net grants its tables to PUBLIC, TRIGGER included (sql/pg_net.sql, its
-- last lines), so any role can attach a trigger to net.http_request_queue, and such a trigger
-- runs inside whoever inserts the request. So the secret stays with the functions that sign
-- (jobhook.dispatch), the insert is made by jobhook.ring, which runs as jobhook_doorbell, and
-- ring queues nothing while a trigger jobhook did not make is there: code run inside ring could
-- still change session settings (a plain SET outlives the function that ran it, whatever its
-- SET clauses), and the definer caller would then resolve names and operators by the planted
-- search_path, as its owner. A planted trigger thus stops doorbells, and only that: jobs wait,
-- the sweep and the ticker keep trying, and /ready names the trigger. ring locks the table
-- first (ROW EXCLUSIVE conflicts with the lock CREATE TRIGGER takes), so none can be added
-- between the check and the insert.

-- jobhook_doorbell owns jobhook.ring and nothing else. It holds anon's rights, which every
-- Supabase image gives pg_net's request functions to, and no others: a trigger planted on
-- net.http_request_queue runs as this role, so it can neither decrypt Vault nor read jobs.
do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'jobhook_doorbell') then
    create role jobhook_doorbell nologin inherit;
  end if;
end;
$$;
comment on role jobhook_doorbell is
  'jobhook: queues signed doorbells in pg_net with anon''s rights; owns jobhook.ring only.';
grant anon to jobhook_doorbell;

-- Standard Webhooks signature: "v1," || base64(HMAC-SHA256(key, "id.timestamp.body")), where key
-- is the base64 part of a whsec_ secret. `body` must be the exact text pg_net sends: net.http_post
-- sends convert_to(body::text, 'UTF8'), so callers sign body::text of the jsonb they post.
-- PL/pgSQL, not SQL: a SQL function with a SET clause cannot be inlined and is planned again on
-- every call, while PL/pgSQL keeps its plans for the life of the (pooled, long-lived) connection.
create or replace function jobhook.sign_webhook(secret text, msg_id text, ts bigint, body text)
returns text
language plpgsql
immutable
strict
set search_path = ''
as $$
begin
  return 'v1,' || encode(
    extensions.hmac(
      convert_to(msg_id || '.' || ts::text || '.' || body, 'UTF8'),
      decode(regexp_replace(secret, '^whsec_', ''), 'base64'),
      'sha256'
    ),
    'base64'
  );
end;
$$;

-- The doorbell's URL and signing secret, read from Vault in one query (decryption is most of a
-- small dispatch's cost). Null when either is missing.
create or replace function jobhook.webhook_config(out url text, out secret text)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  select max(s.decrypted_secret) filter (where s.name = 'jobhook_webhook_url'),
         max(s.decrypted_secret) filter (where s.name = 'jobhook_webhook_secret')
    into url, secret
    from vault.decrypted_secrets s
   where s.name in ('jobhook_webhook_url', 'jobhook_webhook_secret');
end;
$$;

-- What is wrong with the webhook URL, or null. pg_net checks a URL when it is queued
-- (curl_url_set, supabase/pg_net src/util.c) and fails the calling statement, which here is a
-- client's insert: a platform error the client can do nothing about. So the doorbell rings only
-- for a URL of the shape a webhook has (http or https, a host name or address, a port, a path),
-- a subset of what curl takes; for any other it rings nothing, the jobs wait, and /ready and
-- `jobhook doctor` say why.
create or replace function jobhook.webhook_url_problem(url text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when url is null then 'it is not set'
    when url !~* '^https?://' then 'its scheme must be http or https'
    when url !~ '^[A-Za-z]+://([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?([/?#][^[:space:][:cntrl:]]*)?$'
      then 'it must read scheme://host[:port][/path], with no spaces and no user name'
    when substring(url from '^[A-Za-z]+://[^/?#]*:([0-9]{1,5})([/?#]|$)')::integer > 65535
      then 'its port must be at most 65535'
  end
$$;

-- The triggers on pg_net's queue that neither pg_net nor PostgreSQL made.
create or replace function jobhook.foreign_queue_triggers()
returns text[]
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(array_agg(t.tgname::text order by t.tgname), '{}')
    from pg_catalog.pg_trigger t
   where t.tgrelid = 'net.http_request_queue'::regclass
     and not t.tgisinternal
$$;

-- Queue one signed request, or none (null) while a foreign trigger sits on the queue. Security
-- definer, owned by jobhook_doorbell: whatever the caller may do (the sweep, the dispatcher and
-- the insert trigger read Vault), the insert into pg_net's queue runs as jobhook_doorbell.
-- The hint says what postgres can do about such a trigger on hosted Supabase: the table is
-- supabase_admin's, so DROP TRIGGER is refused, but dropping the trigger's function with
-- CASCADE (as a member of its owner) takes the trigger along, and supautils lets postgres drop
-- and create pg_net.
create or replace function jobhook.ring(url text, body jsonb, headers jsonb, timeout_ms integer)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  planted text[];
begin
  lock table net.http_request_queue in row exclusive mode;
  -- jobhook.foreign_queue_triggers' query, here: this role has no use of the jobhook schema.
  select coalesce(array_agg(t.tgname::text order by t.tgname), '{}') into planted
    from pg_catalog.pg_trigger t
   where t.tgrelid = 'net.http_request_queue'::regclass
     and not t.tgisinternal;
  if cardinality(planted) > 0 then
    raise warning 'jobhook: not ringing: net.http_request_queue has trigger(s) jobhook did not make: %',
      array_to_string(planted, ', ')
      using hint = 'drop each with its function (drop function <function> cascade), or re-create pg_net'
        ' (drop extension pg_net; create extension pg_net with schema extensions): drop trigger'
        ' needs the owner of pg_net''s table, supabase_admin; jobs wait meanwhile';
    return null;
  end if;
  return net.http_post(
    url := ring.url,
    body := ring.body,
    headers := ring.headers,
    timeout_milliseconds := ring.timeout_ms
  );
end;
$$;

-- Handing a function to another role needs membership in it and, for that role, CREATE on the
-- schema (taken back at once: ownership stays, the right to add objects does not).
grant jobhook_doorbell to current_user;
grant create on schema jobhook to jobhook_doorbell;
alter function jobhook.ring(text, jsonb, jsonb, integer) owner to jobhook_doorbell;
revoke create on schema jobhook from jobhook_doorbell;
revoke execute on function jobhook.ring(text, jsonb, jsonb, integer) from public;
grant execute on function jobhook.ring(text, jsonb, jsonb, integer) to current_user, service_role;
revoke execute on function jobhook.foreign_queue_triggers() from public;
grant execute on function jobhook.foreign_queue_triggers() to service_role;

-- Ring the doorbell for `jobs` (a JSON array of {"id", "job_type"}): one signed POST per 500
-- jobs to the URL in Vault. Returns the number of requests queued (a request ring refused is
-- not counted, so the insert trigger takes back its marks). pg_net sends them after
-- commit, so a rolled-back insert sends nothing. Without the Vault secrets it warns and sends
-- nothing: the jobs stay pending and the sweep dispatches them once the secrets exist.
create or replace function jobhook.dispatch(jobs jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  total integer := coalesce(jsonb_array_length(jobs), 0);
  webhook_url text;
  webhook_secret text;
  timeout_ms integer;
  chunk jsonb;
  body jsonb;
  msg_id text;
  ts bigint;
  requests integer := 0;
  problem text;
begin
  if total = 0 then
    return 0;
  end if;

  select c.url, c.secret into webhook_url, webhook_secret from jobhook.webhook_config() c;
  if webhook_url is null or webhook_secret is null then
    raise warning 'jobhook: Vault secret % is not set; % job(s) stay pending until it is',
      case when webhook_url is null then 'jobhook_webhook_url' else 'jobhook_webhook_secret' end,
      total
      using hint = 'select vault.create_secret(<value>, <name>), or set [db.vault] in supabase/config.toml';
    return 0;
  end if;

  problem := jobhook.webhook_url_problem(webhook_url);
  if problem is not null then
    raise warning 'jobhook: the webhook URL in Vault (jobhook_webhook_url) cannot be used: %; % job(s) stay pending until it is fixed',
      problem, total
      using hint = 'set it to your app''s /webhooks/jobs address with vault.update_secret';
    return 0;
  end if;

  select s.dispatch_timeout_ms into timeout_ms from jobhook.settings s;

  -- A list that fits one request (every single-row insert) is posted as it is.
  for chunk in
    select jobs where total <= 500
    union all
    select jsonb_agg(j.job order by j.n)
      from jsonb_array_elements(jobs) with ordinality as j (job, n)
     where total > 500
     group by (j.n - 1) / 500
  loop
    body := jsonb_build_object('type', 'jobs.dispatch', 'jobs', chunk);
    msg_id := 'msg_' || replace(gen_random_uuid()::text, '-', '');
    -- clock time, not transaction start: receivers refuse signatures older than 5 minutes.
    ts := floor(extract(epoch from clock_timestamp()))::bigint;
    -- Signed here, with the secret; queued by jobhook.ring, without it.
    if jobhook.ring(
         webhook_url,
         body,
         jsonb_build_object(
           'Content-Type', 'application/json',
           'webhook-id', msg_id,
           'webhook-timestamp', ts::text,
           'webhook-signature', jobhook.sign_webhook(webhook_secret, msg_id, ts, body::text)
         ),
         timeout_ms
       ) is not null then
      requests := requests + 1;
    end if;
  end loop;
  return requests;
end;
$$;

-- How many inserts shared another's doorbell instead of ringing their own. A sequence: counted
-- without a lock or a shared row, outside the transaction. A runner reads it with each claim and
-- drains what is due only when it moved, so a ring that shared nothing costs no extra query.
create sequence if not exists jobhook.shared_doorbells;
comment on sequence jobhook.shared_doorbells is
  'Inserts whose jobs a doorbell rung by another announced; runners drain when it moves.';
revoke all on sequence jobhook.shared_doorbells from public, anon, authenticated;
grant select on sequence jobhook.shared_doorbells to service_role;

-- Whether this transaction may ring now: when the last doorbell is at least 1 /
-- max_doorbells_per_second old. The turn is a row lock taken with SKIP LOCKED, so an insert
-- never waits for another: while one transaction holds the turn (it rang and has not committed
-- yet), the others do not ring, and their jobs are announced by its ring, or, should it roll
-- back, by the every-second jobhook.dispatch_due. The time is read without the lock first: a
-- row lock is a write (WAL, a dirty page), and most inserts under load need only the read.
create or replace function jobhook.take_doorbell_turn()
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  last_rung timestamptz;
  per_second integer;
  pace interval;
begin
  select s.max_doorbells_per_second into per_second from jobhook.settings s;
  pace := make_interval(secs => 1.0 / per_second);
  select l.rung_at into last_rung from jobhook.locks l where l.name = 'doorbell';
  if last_rung > clock_timestamp() - pace then
    return false;
  end if;
  select l.rung_at into last_rung
    from jobhook.locks l
   where l.name = 'doorbell'
     for update skip locked;
  if not found or last_rung > clock_timestamp() - pace then
    return false;
  end if;
  update jobhook.locks l set rung_at = clock_timestamp() where l.name = 'doorbell';
  return true;
end;
$$;

-- Drains that keep watching: a runner that has run dry goes on reading
-- jobhook.shared_doorbells every few milliseconds for a short while (the runtime's
-- JOBHOOK_DRAIN_LINGER_MS) and claims as soon as it moves. It lists its job types here until
-- when it will watch, and an insert of those types then counts itself instead of ringing: a
-- steady stream of single inserts costs a sequence step each, not a signed request through
-- pg_net and the app. When it stops watching it takes its rows back (jobhook.stop_draining)
-- and claims once more; should it die instead, its rows lapse by themselves within the linger.
-- A job whose count the watcher missed (its insert committed after the last look) is rung for by
-- jobhook.dispatch_due a second later, as any job that shared a doorbell.
create table if not exists jobhook.drains (
  job_type text primary key,
  watching_until timestamptz not null
);
comment on table jobhook.drains is
  'Job types a runner watches jobhook.shared_doorbells for, and until when: their inserts do not ring.';
alter table jobhook.drains enable row level security;
revoke all on jobhook.drains from public, anon, authenticated;

-- Watch for `job_types` for `linger_ms` more (a later time another runner set stays): until
-- when this runner now watches, and the count of shared doorbells so far.
create or replace function jobhook.keep_draining(
  job_types text[], linger_ms integer, out watching_until timestamptz, out shared_doorbells bigint
)
language plpgsql
security definer
set search_path = ''
as $$
begin
  if linger_ms is null or linger_ms < 1 or linger_ms > 10000 then
    raise exception 'linger_ms must be between 1 and 10000, got %', linger_ms
      using errcode = '22023';
  end if;
  watching_until := clock_timestamp() + make_interval(secs => linger_ms / 1000.0);
  insert into jobhook.drains as d (job_type, watching_until)
  select distinct t, keep_draining.watching_until
    from unnest(job_types) as t
   where t is not null
  on conflict (job_type) do update
    set watching_until = greatest(d.watching_until, excluded.watching_until);
  shared_doorbells := (select s.last_value from jobhook.shared_doorbells s);
end;
$$;

-- Stop watching for `job_types`: their inserts ring again, unless another runner still watches.
-- Only a time no later than this runner's own is taken back.
create or replace function jobhook.stop_draining(job_types text[], watched_until timestamptz)
returns void
language sql
security definer
set search_path = ''
as $$
  update jobhook.drains d
     set watching_until = clock_timestamp()
   where d.job_type = any (job_types)
     and d.watching_until <= watched_until
$$;

revoke execute on function
  jobhook.keep_draining(text[], integer),
  jobhook.stop_draining(text[], timestamptz)
from public;
grant execute on function
  jobhook.keep_draining(text[], integer),
  jobhook.stop_draining(text[], timestamptz)
to service_role;

-- Statement trigger: one doorbell for all due rows of the statement (the row trigger in
-- 03_enqueue.sql marked them), unless a runner watches for all their types or another insert
-- holds the doorbell's turn. Security definer because it reads Vault, which clients must never
-- see.
create or replace function jobhook.jobs_dispatch()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  due jsonb;
  watched boolean;
begin
  -- One statement, as the quota's (03_enqueue.sql): the due jobs, and whether a runner watches
  -- for every one of their types.
  select a.due,
         not exists (select from unnest(a.due_types) as t
                      where not exists (select from jobhook.drains d
                                         where d.job_type = t
                                           and d.watching_until > clock_timestamp()))
    into due, watched
    from (select jsonb_agg(jsonb_build_object('id', i.id, 'job_type', i.job_type)) as due,
                 array_agg(distinct i.job_type) as due_types
            from inserted i
           where i.dispatch_count > 0) a;
  if due is null then
    return null;
  end if;
  if watched or not jobhook.take_doorbell_turn() then
    -- Announced by a watching runner, by the doorbell another insert rang (or rings), or by
    -- dispatch_due.
    perform nextval('jobhook.shared_doorbells');
    return null;
  end if;
  if jobhook.dispatch(due) = 0 then
    -- Nothing went out (Vault is not configured): take back the marks the row trigger made,
    -- so these jobs count as never delivered rather than as delivered and ignored.
    update public.jobs j
       set dispatch_count = 0, dispatched_at = null
     where j.id in (select (d ->> 'id')::uuid from jsonb_array_elements(due) d);
  end if;
  return null;
end;
$$;

create trigger jobs_dispatch
  after insert on public.jobs
  referencing new table as inserted
  for each statement execute function jobhook.jobs_dispatch();

-- Trigger functions fire whatever their EXECUTE privilege; revoking it only stops anyone from
-- attaching them to a table of their own (jobs_dispatch would sign any ids it is handed).
revoke execute on function
  jobhook.webhook_config(),
  jobhook.webhook_url_problem(text),
  jobhook.sign_webhook(text, text, bigint, text),
  jobhook.dispatch(jsonb),
  jobhook.take_doorbell_turn(),
  jobhook.jobs_dispatch()
from public;
grant execute on function
  jobhook.webhook_config(),
  jobhook.webhook_url_problem(text),
  jobhook.sign_webhook(text, text, bigint, text),
  jobhook.dispatch(jsonb)
to service_role;

-- A trigger planted on pg_net's queue must not run at all inside jobhook's functions.
--
-- jobhook.ring runs the insert into net.http_request_queue as jobhook_doorbell, so a planted
-- trigger held only anon's rights; but code that runs there can still change session settings
-- (a plain SET outlives the function that ran it, whatever its own SET clauses), and the
-- security definer caller then resolves names and operators by the planted search_path, as
-- its owner. So ring queues nothing while any trigger but the system's own sits on the queue:
-- it locks the table first (ROW EXCLUSIVE conflicts with the lock CREATE TRIGGER takes), so no
-- trigger can be added between the check and the insert. A planted trigger then stops the
-- doorbells, and only that: jobs wait, the sweep and the ticker keep trying, and /ready names
-- the trigger.

-- The triggers on pg_net's queue that neither pg_net nor PostgreSQL made. Security definer:
-- /ready and operators read it without rights on the catalog's details.
create function jobhook.foreign_queue_triggers()
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
      using hint = 'drop them (drop trigger <name> on net.http_request_queue); jobs wait meanwhile';
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

-- As before; a request ring refused is not counted, so the insert trigger takes back its
-- marks and the jobs count as never delivered.
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

revoke execute on function jobhook.foreign_queue_triggers() from public;
grant execute on function jobhook.foreign_queue_triggers() to service_role;

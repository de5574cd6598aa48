-- Harden the enqueue path and the doorbell against hostile clients.
--
-- 1. A payload PostgreSQL stores but the runtime cannot read is refused at insert, by the same
--    limits the runtime's decoders have (CPython's json module, pydantic-core).
-- 2. run_at must be a finite time the runtime can represent (Python's datetime ends at 9999):
--    'infinity' used to make the every-second dispatch fail for everyone.
-- 3. Requests are queued in pg_net by a role with a client's rights only. pg_net grants its
--    tables to PUBLIC, TRIGGER included (sql/pg_net.sql, its last lines), so any role can attach
--    a trigger to net.http_request_queue; such a trigger runs as whoever inserts the request.
--    Before this migration that was the owner of jobhook's security definer functions, which
--    reads Vault and every user's jobs.

-- -- 1 and 2: what an insert is refused for ----------------------------------------------------

create or replace function jobhook.jobs_before_insert()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  job_type jobhook.job_types;
  max_payload_bytes integer;
  payload_text text;
  payload_bytes integer;
  -- How deep a payload may nest: see "what the runner can read" below.
  max_depth constant integer := 200;
  -- Python's datetime ends with 9999; a day's margin keeps the value in range in every time
  -- zone a client may read it in.
  latest_run_at constant timestamptz := '9999-12-30 00:00:00+00';
  number numeric;
begin
  select * into job_type from jobhook.job_types t where t.name = new.job_type;
  if not found then
    raise exception 'unknown job type "%"', new.job_type
      using errcode = '22023',
            hint = 'known job types: ' || coalesce(
              (select string_agg(t.name, ', ' order by t.name)
                 from jobhook.job_types t where t.enabled),
              'none (run `jobhook types sync`)');
  end if;
  if not job_type.enabled then
    raise exception 'job type "%" is disabled', new.job_type
      using errcode = '22023', hint = 'update jobhook.job_types set enabled = true to accept it';
  end if;

  if new.payload is null or jsonb_typeof(new.payload) <> 'object' then
    raise exception 'payload must be a JSON object, got %', coalesce(jsonb_typeof(new.payload), 'null')
      using errcode = '22023';
  end if;
  select s.max_payload_bytes into max_payload_bytes from jobhook.settings s;
  payload_text := new.payload::text;
  payload_bytes := octet_length(payload_text);
  if payload_bytes > max_payload_bytes then
    raise exception 'payload is % bytes, over the limit of % bytes', payload_bytes, max_payload_bytes
      using errcode = '22023',
            hint = 'store large inputs in Supabase Storage and pass their path in the payload';
  end if;
  -- What the runner can read: the limits of the runtime's decoders, so that a payload stored
  -- here can never break a claim that other users' jobs share.
  -- * nesting: pydantic-core validates at most 255 levels (its recursion guard) and CPython's
  --   decoder stops near sys.getrecursionlimit(); 200 leaves room for a handler's own models.
  --   tests/test_payload_limits.py pins that the runtime reads 200 levels and not 256.
  -- * integers: PostgreSQL prints an integral number in full, and CPython refuses to parse an
  --   integer of more than 4300 digits (sys.int_info.default_max_str_digits); 10^4300 is the
  --   first value with 4301.
  -- * other numbers: CPython parses them as doubles, and from 2^1024 - 2^970 (halfway between
  --   the largest double and 2^1024) they round to infinity, which no JSON can carry back.
  -- A payload under 309 bytes can hold neither 200 levels (two bytes each) nor a number of 309
  -- digits, so the common small payload costs one comparison.
  if payload_bytes >= 309 then
    -- `.**{n}` reaches what lies n levels below the top object; a container there means
    -- n + 1 levels of nesting.
    if jsonb_path_exists(new.payload,
         'strict $.**{200} ? (@.type() == "object" || @.type() == "array")') then
      raise exception 'payload is nested more than % levels deep, which the runner cannot read',
        max_depth
        using errcode = '22023', hint = 'flatten the payload';
    end if;
    for number in
      select v::text::numeric
        from jsonb_path_query(new.payload,
               'strict $.** ? (@.type() == "number" && (@ >= 1e308 || @ <= -1e308))') as q (v)
    loop
      if scale(number) = 0 and abs(number) >= 10::numeric ^ 4300 then
        raise exception 'payload holds an integer of more than 4300 digits, which the runner cannot read'
          using errcode = '22023', hint = 'send large numbers as strings';
      end if;
      if scale(number) > 0 and abs(number) >= 2::numeric ^ 1024 - 2::numeric ^ 970 then
        raise exception 'payload holds a number beyond the range of a double (about 1.8e308), which the runner cannot read'
          using errcode = '22023', hint = 'send large numbers as strings';
      end if;
    end loop;
  end if;

  if new.run_at is not null and (not isfinite(new.run_at) or new.run_at >= latest_run_at) then
    raise exception 'run_at must be a time before %, got %', latest_run_at, new.run_at
      using errcode = '22023', hint = 'leave run_at out to start the job now';
  end if;

  new.status := 'pending';
  new.attempt := 0;
  new.max_attempts := job_type.max_attempts;
  new.progress := 0;
  new.progress_message := null;
  new.result := null;
  new.error := null;
  new.errors := '[]';
  new.cancel_requested_at := null;
  new.created_at := now();
  new.updated_at := now();
  new.started_at := null;
  new.finished_at := null;
  new.lease_expires_at := null;
  new.worker_id := null;
  -- A run_at in the past means "now": it must not jump the line or look stuck to the sweep.
  new.run_at := greatest(coalesce(new.run_at, now()), now());
  if new.run_at <= now() then
    new.dispatch_count := 1;
    new.dispatched_at := now();
  else
    new.dispatch_count := 0;
    new.dispatched_at := null;
  end if;
  return new;
end;
$$;

-- Rows written before these checks: a job whose run_at is out of range can never be due, and
-- reading it broke every client that listed it. It fails with the reason; run_at becomes its
-- creation time, which any client can read.
with out_of_range as (
  select j.id, j.status, j.run_at::text as given
    from public.jobs j
   where not isfinite(j.run_at) or j.run_at >= timestamptz '9999-12-30 00:00:00+00'
     for update
)
update public.jobs j
   set run_at = j.created_at,
       status = case when o.status = 'pending' then 'failed' else j.status end,
       finished_at = case when o.status = 'pending' then now() else j.finished_at end,
       error = case when o.status = 'pending'
                    then 'run_at ' || o.given || ' is out of range; enqueue the job again'
                    else j.error end,
       errors = case when o.status = 'pending'
                     then j.errors || jsonb_build_array(jsonb_build_object(
                            'attempt', j.attempt, 'at', now(),
                            'message', 'run_at ' || o.given || ' is out of range; enqueue the job again',
                            'kind', 'invalid_run_at'))
                     else j.errors end,
       updated_at = now()
  from out_of_range o
 where j.id = o.id;

-- -- 3: the doorbell is queued by a role with a client's rights -----------------------------------

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

-- Queue one signed request. Security definer, owned by jobhook_doorbell: whatever the caller
-- may do (the sweep, the dispatcher and the insert trigger read Vault), the insert into pg_net's
-- queue, and any trigger on it, runs as jobhook_doorbell.
create function jobhook.ring(url text, body jsonb, headers jsonb, timeout_ms integer)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
begin
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
    perform jobhook.ring(
      webhook_url,
      body,
      jsonb_build_object(
        'Content-Type', 'application/json',
        'webhook-id', msg_id,
        'webhook-timestamp', ts::text,
        'webhook-signature', jobhook.sign_webhook(webhook_secret, msg_id, ts, body::text)
      ),
      timeout_ms
    );
    requests := requests + 1;
  end loop;
  return requests;
end;
$$;


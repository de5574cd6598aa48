-- Enqueue checks and signed dispatch.
--
-- A client insert runs three triggers: a row trigger that validates and normalises each row,
-- then two statement triggers over the statement's transition table, fired in name order:
-- jobs_check_quota, then jobs_dispatch (one signed request per 500 due jobs, not one per row).

-- Standard Webhooks signature: "v1," || base64(HMAC-SHA256(key, "id.timestamp.body")), where key
-- is the base64 part of a whsec_ secret. `body` must be the exact text pg_net sends: net.http_post
-- sends convert_to(body::text, 'UTF8'), so callers sign body::text of the jsonb they post.
create function jobhook.sign_webhook(secret text, msg_id text, ts bigint, body text)
returns text
language sql
immutable
strict
set search_path = ''
as $$
  select 'v1,' || encode(
    extensions.hmac(
      convert_to(msg_id || '.' || ts::text || '.' || body, 'UTF8'),
      decode(regexp_replace(secret, '^whsec_', ''), 'base64'),
      'sha256'
    ),
    'base64'
  )
$$;

-- The doorbell's URL and signing secret, read from Vault in one query (decryption is most of a
-- small dispatch's cost). Null when either is missing.
create function jobhook.webhook_config(out url text, out secret text)
language sql
stable
security definer
set search_path = ''
as $$
  select max(decrypted_secret) filter (where name = 'jobhook_webhook_url'),
         max(decrypted_secret) filter (where name = 'jobhook_webhook_secret')
    from vault.decrypted_secrets
   where name in ('jobhook_webhook_url', 'jobhook_webhook_secret')
$$;

-- Ring the doorbell for `jobs` (a JSON array of {"id", "job_type"}): one signed POST per 500
-- jobs to the URL in Vault. Returns the number of requests queued. pg_net sends them after
-- commit, so a rolled-back insert sends nothing. Without the Vault secrets it warns and sends
-- nothing: the jobs stay pending and the sweep dispatches them once the secrets exist.
create function jobhook.dispatch(jobs jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  webhook_url text;
  webhook_secret text;
  timeout_ms integer;
  chunk jsonb;
  body jsonb;
  msg_id text;
  ts bigint;
  requests integer := 0;
begin
  if jobs is null or jsonb_array_length(jobs) = 0 then
    return 0;
  end if;

  select c.url, c.secret into webhook_url, webhook_secret from jobhook.webhook_config() c;
  if webhook_url is null or webhook_secret is null then
    raise warning 'jobhook: Vault secret % is not set; % job(s) stay pending until it is',
      case when webhook_url is null then 'jobhook_webhook_url' else 'jobhook_webhook_secret' end,
      jsonb_array_length(jobs)
      using hint = 'select vault.create_secret(<value>, <name>), or set [db.vault] in supabase/config.toml';
    return 0;
  end if;

  select s.dispatch_timeout_ms into timeout_ms from jobhook.settings s;

  for chunk in
    select jsonb_agg(job order by n)
      from jsonb_array_elements(jobs) with ordinality as j (job, n)
     group by (n - 1) / 500
  loop
    body := jsonb_build_object('type', 'jobs.dispatch', 'jobs', chunk);
    msg_id := 'msg_' || replace(gen_random_uuid()::text, '-', '');
    -- clock time, not transaction start: receivers refuse signatures older than 5 minutes.
    ts := floor(extract(epoch from clock_timestamp()))::bigint;
    perform net.http_post(
      url := webhook_url,
      body := body,
      headers := jsonb_build_object(
        'Content-Type', 'application/json',
        'webhook-id', msg_id,
        'webhook-timestamp', ts::text,
        'webhook-signature', jobhook.sign_webhook(webhook_secret, msg_id, ts, body::text)
      ),
      timeout_milliseconds := timeout_ms
    );
    requests := requests + 1;
  end loop;
  return requests;
end;
$$;

-- Row trigger: validate, then normalise. Runs as the inserting role (it reads only the public
-- catalogue). Whatever a client sends for status, attempt, result and the rest, a new job
-- starts pending and clean. Due jobs are marked dispatched here, in the insert itself, so the
-- statement trigger that rings the doorbell needs no second write per row.
create function jobhook.jobs_before_insert()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  job_type jobhook.job_types;
  max_payload_bytes integer;
  payload_bytes integer;
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
  payload_bytes := octet_length(new.payload::text);
  if payload_bytes > max_payload_bytes then
    raise exception 'payload is % bytes, over the limit of % bytes', payload_bytes, max_payload_bytes
      using errcode = '22023',
            hint = 'store large inputs in Supabase Storage and pass their path in the payload';
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

-- Statement trigger: the per-user quota on unfinished jobs. Runs as the inserting role. Roles
-- that bypass RLS (service_role, postgres) are trusted backends; the quota guards the API.
create function jobhook.jobs_check_quota()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  uid uuid := auth.uid();
  global_limit integer;
  unfinished bigint;
  over record;
begin
  if exists (
    select from pg_catalog.pg_roles
     where rolname = current_user and (rolsuper or rolbypassrls)
  ) then
    return null;
  end if;

  -- Concurrent inserts by one user cannot see each other's uncommitted rows; without this lock
  -- N parallel requests would each pass the check and together exceed the quota. The lock is
  -- per user and held to the end of the transaction, so other users are not held up.
  perform pg_advisory_xact_lock(hashtextextended('jobhook.quota:' || uid::text, 0));
  select s.max_unfinished_per_user into global_limit from jobhook.settings s;
  select count(*) into unfinished
    from public.jobs j
   where j.user_id = uid and j.status in ('pending', 'processing');
  if unfinished > global_limit then
    raise exception 'too many unfinished jobs: % pending or processing, the limit is %',
      unfinished, global_limit
      using errcode = 'PT429',
            hint = 'wait for some to finish or cancel them, then retry';
  end if;

  select t.name, t.max_unfinished_per_user as job_limit, count(*) as unfinished into over
    from public.jobs j
    join jobhook.job_types t on t.name = j.job_type
   where j.user_id = uid
     and j.status in ('pending', 'processing')
     and t.max_unfinished_per_user is not null
     and j.job_type in (select i.job_type from inserted i)
   group by t.name, t.max_unfinished_per_user
  having count(*) > t.max_unfinished_per_user
   limit 1;
  if found then
    raise exception 'too many unfinished "%" jobs: % pending or processing, the limit is %',
      over.name, over.unfinished, over.job_limit
      using errcode = 'PT429',
            hint = 'wait for some to finish or cancel them, then retry';
  end if;
  return null;
end;
$$;

-- Statement trigger: one doorbell for all due rows of the statement. Security definer because
-- it reads Vault, which clients must never see.
create function jobhook.jobs_dispatch()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  due jsonb := (select jsonb_agg(jsonb_build_object('id', i.id, 'job_type', i.job_type))
                  from inserted i
                 where i.dispatch_count > 0);
begin
  if due is not null and jobhook.dispatch(due) = 0 then
    -- Nothing went out (Vault is not configured): take back the marks the row trigger made,
    -- so these jobs count as never delivered rather than as delivered and ignored.
    update public.jobs j
       set dispatch_count = 0, dispatched_at = null
     where j.id in (select (d ->> 'id')::uuid from jsonb_array_elements(due) d);
  end if;
  return null;
end;
$$;

create trigger jobs_before_insert
  before insert on public.jobs
  for each row execute function jobhook.jobs_before_insert();

create trigger jobs_check_quota
  after insert on public.jobs
  referencing new table as inserted
  for each statement execute function jobhook.jobs_check_quota();

create trigger jobs_dispatch
  after insert on public.jobs
  referencing new table as inserted
  for each statement execute function jobhook.jobs_dispatch();

-- Trigger functions fire whatever their EXECUTE privilege; revoking it only stops anyone from
-- attaching them to a table of their own (jobs_dispatch would sign any ids it is handed).
revoke execute on function
  jobhook.webhook_config(),
  jobhook.sign_webhook(text, text, bigint, text),
  jobhook.dispatch(jsonb),
  jobhook.jobs_before_insert(),
  jobhook.jobs_check_quota(),
  jobhook.jobs_dispatch()
from public;
grant execute on function
  jobhook.webhook_config(),
  jobhook.sign_webhook(text, text, bigint, text),
  jobhook.dispatch(jsonb)
to service_role;

-- A webhook URL pg_net would refuse no longer fails clients' inserts: pg_net checks the URL
-- when a request is queued and fails the calling statement (a client's insert, through the
-- doorbell), so the doorbell rings only for a URL of a webhook's shape and otherwise leaves the
-- jobs waiting, saying why.

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

revoke execute on function jobhook.webhook_url_problem(text) from public;
grant execute on function jobhook.webhook_url_problem(text) to service_role;

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

-- Ring the doorbell for due pending jobs not dispatched since they became due: delayed jobs
-- whose run_at has come and retries whose backoff has passed. The runtime calls this every second
-- so they start promptly. With include_lost (the sweep), jobs whose last delivery is older than
-- redispatch_after_seconds are rung again too: their doorbell was lost. All go out together, 500
-- per request. Returns the number of jobs rung.
--
-- With none of those, it rings once for jobs due for over a second and still pending: inserts
-- that shared a doorbell (04_doorbell.sql) whose drain ran dry before they committed, or whose
-- ringer rolled back; users waiting for their running cap; a backlog the runners have no room
-- for. That ring counts no delivery (nothing says one was lost); one call rings at most once, and
-- the runtime calls it once a second.
create or replace function jobhook.dispatch_due(include_lost boolean default false, max_jobs integer default 50000)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  picked uuid[];
  due jsonb;
  lost_before timestamptz;
  max_dispatches integer;
begin
  -- Settings read into variables rather than joined: the planner then sees the job rows alone.
  select now() - make_interval(secs => s.redispatch_after_seconds), s.max_dispatches
    into lost_before, max_dispatches
    from jobhook.settings s;

  -- Pick and lock; skip locked: a job another session is claiming or dispatching right now is
  -- not due here. Two queries, not one with an OR on include_lost: the every-second call must
  -- stay on the small jobs_due_idx, whose size is the number of jobs waiting for a first ring.
  if include_lost then
    picked := array(
      select j.id
        from public.jobs j
       where j.status = 'pending'
         and j.run_at <= now()
         and j.cancel_requested_at is null
         and (j.dispatched_at is null
              or j.dispatched_at < j.run_at
              or (j.dispatched_at < lost_before and j.dispatch_count < max_dispatches))
       order by j.run_at
       limit max_jobs
         for update skip locked);
  else
    picked := array(
      select j.id
        from public.jobs j
       where j.status = 'pending'
         and (j.dispatched_at is null or j.dispatched_at < j.run_at)
         and j.run_at <= now()
         and j.cancel_requested_at is null
       order by j.run_at
       limit max_jobs
         for update skip locked);
  end if;
  if cardinality(picked) = 0 then
    select jsonb_agg(jsonb_build_object('id', w.id, 'job_type', w.job_type) order by w.run_at)
      into due
      from (select j.id, j.job_type, j.run_at
              from public.jobs j
             where j.status = 'pending'
               and j.run_at <= now() - interval '1 second'
               and j.cancel_requested_at is null
             order by j.run_at
             limit 100) w;
    -- Not when a doorbell rang within the second: its drain is at work. The doorbell's last
    -- committed ring, read without its lock: should a transaction hold the turn and stall (an
    -- insert in a long transaction), inserts do not ring meanwhile, and this still does.
    if due is not null and (select l.rung_at is null or l.rung_at < clock_timestamp() - interval '1 second'
                              from jobhook.locks l where l.name = 'doorbell') then
      perform jobhook.dispatch(due);
    end if;
    return 0;
  end if;
  -- Without the Vault secrets, or with a URL pg_net would refuse, nothing can be sent: mark
  -- nothing, so no job counts a delivery that never happened (and none is failed as
  -- undeliverable for it). Read only when there is something to send: decrypting is the
  -- costly part of an idle call.
  if (select c.secret is null or jobhook.webhook_url_problem(c.url) is not null
        from jobhook.webhook_config() c) then
    return 0;
  end if;

  with marked as (
    update public.jobs j
       set dispatch_count = j.dispatch_count + 1,
           dispatched_at = now()
     where j.id = any (picked)
    returning j.id, j.job_type, j.run_at
  )
  select jsonb_agg(jsonb_build_object('id', m.id, 'job_type', m.job_type) order by m.run_at)
    into due
    from marked m;
  perform jobhook.dispatch(due);
  return coalesce(jsonb_array_length(due), 0);
end;
$$;

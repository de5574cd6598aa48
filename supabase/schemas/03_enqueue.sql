-- Enqueue: what a client insert into public.jobs runs.
--
-- A client insert runs three triggers: a row trigger that validates and normalises each row,
-- then two statement triggers over the statement's transition table, fired in name order:
-- jobs_check_quota (here), then jobs_dispatch (04_doorbell.sql: one signed request per 500 due
-- jobs, not one per row).

-- Row trigger: validate, then normalise. Runs as the inserting role (it reads only the public
-- catalogue). Whatever a client sends for status, attempt, result and the rest, a new job
-- starts pending and clean. Due jobs are marked dispatched here, in the insert itself, so the
-- statement trigger that rings the doorbell needs no second write per row.
--
-- Hostile input is refused here, at the boundary where it enters:
-- * a payload PostgreSQL stores but the runtime cannot read, by the same limits the runtime's
--   decoders have (CPython's json module, pydantic-core): one such payload would otherwise break
--   every claim that other users' jobs share;
-- * a run_at that is not a finite time the runtime can represent (Python's datetime ends at
--   9999): 'infinity' would make the every-second dispatch fail for everyone;
-- * parameters that are not the job type's: checked against its JSON Schema with pg_jsonschema,
--   each field named, so a misspelt or mistyped parameter fails the insert instead of the job.
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
  problems jsonb;
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

  -- One call when the parameters are right; naming each field costs more, and only on refusal.
  if job_type.params_schema <> '{}'
     and not extensions.jsonb_matches_schema(job_type.params_schema::json, new.payload) then
    -- Why, one {"field", "message"} per problem: unknown and missing parameters by name, and
    -- each wrong one in pg_jsonschema's words (which name no path, so each property is checked
    -- on its own, with the definitions its references point into).
    with problem (n, field, message) as (
        select 1, k, 'unknown parameter'
          from jsonb_object_keys(new.payload) as k
         where job_type.params_schema -> 'additionalProperties' = 'false'
           and not coalesce(job_type.params_schema -> 'properties' ? k, false)
        union all
        select 2, r, 'missing (a required parameter)'
          from jsonb_array_elements_text(coalesce(job_type.params_schema -> 'required', '[]')) as r
         where not new.payload ? r
        union all
        select 3, p.key, m
          from jsonb_each(coalesce(job_type.params_schema -> 'properties', '{}')) as p,
               unnest(extensions.jsonschema_validation_errors(
                 (jsonb_build_object('allOf', jsonb_build_array(p.value))
                  -- the definitions its references point into
                  || case when job_type.params_schema ? '$defs'
                          then jsonb_build_object('$defs', job_type.params_schema -> '$defs') else '{}' end
                  || case when job_type.params_schema ? 'definitions'
                          then jsonb_build_object('definitions', job_type.params_schema -> 'definitions') else '{}' end
                 )::json,
                 (new.payload -> p.key)::json)) as m
         where new.payload ? p.key
      ), found as (
        select * from problem
        union all
        -- What no single property explains (a rule over the whole object).
        select 4, 'parameters', m
          from unnest(extensions.jsonschema_validation_errors(job_type.params_schema::json, new.payload::json)) as m
         where not exists (select from problem)
      )
      select coalesce(jsonb_agg(jsonb_build_object('field', field, 'message', message)
                                order by n, field collate "C"), '[]')
        into problems
        from found;
    raise exception 'invalid parameters for job type "%": %', new.job_type,
      (select string_agg(p ->> 'field' || ': ' || (p ->> 'message'), '; ')
         from jsonb_array_elements(problems) as p)
      using errcode = '22023',
            detail = problems::text,
            hint = format('the parameters of "%s": %s', new.job_type, coalesce(
              (select string_agg(k, ', ' order by k)
                 from jsonb_object_keys(job_type.params_schema -> 'properties') as k),
              'none'));
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

-- Statement trigger: the per-user quota on unfinished jobs. Security definer, to write the
-- user's row in jobhook.quota_locks; the role that inserted is read from the `role` setting
-- (what SET ROLE and PostgREST set), since current_user here is the function's owner.
create or replace function jobhook.jobs_check_quota()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  uid uuid := auth.uid();
  inserting_role text := case current_setting('role')
                           when 'none' then session_user::text
                           else current_setting('role')
                         end;
  global_limit integer;
  unfinished bigint;
  over_name text;
  over_limit integer;
  over_count bigint;
begin
  -- Roles that bypass RLS (service_role, postgres) are trusted backends; the quota guards the
  -- API, whose roles (anon, authenticated) need no look in the catalogue.
  if uid is null then
    return null;
  end if;
  if inserting_role not in ('anon', 'authenticated') and exists (
    select from pg_catalog.pg_roles
     where rolname = inserting_role and (rolsuper or rolbypassrls)
  ) then
    return null;
  end if;

  -- Concurrent inserts by one user cannot see each other's uncommitted rows: they queue here,
  -- per user, until the first commits; the count below then sees its jobs. A plain update
  -- once the user has a row, because an upsert that finds its row locks it first, which is
  -- one more WAL record per insert. Under REPEATABLE READ either fails with 40001 when another
  -- transaction updated the row since the snapshot.
  update jobhook.quota_locks q set touched_at = now() where q.user_id = uid;
  if not found then
    insert into jobhook.quota_locks as q (user_id) values (uid)
    on conflict (user_id) do update set touched_at = now();
  end if;

  -- Both limits in one statement: every statement a trigger runs is set up and torn down again
  -- for each insert, and this one runs for every client insert.
  select (select s.max_unfinished_per_user from jobhook.settings s), u.unfinished,
         o.name, o.job_limit, o.unfinished
    into global_limit, unfinished, over_name, over_limit, over_count
    from (select count(*) as unfinished
            from public.jobs j
           where j.user_id = uid and j.status in ('pending', 'processing')) u
    left join lateral (
         select t.name, t.max_unfinished_per_user as job_limit, count(*) as unfinished
           from public.jobs j
           join jobhook.job_types t on t.name = j.job_type
          where j.user_id = uid
            and j.status in ('pending', 'processing')
            and t.max_unfinished_per_user is not null
            and j.job_type in (select i.job_type from inserted i)
          group by t.name, t.max_unfinished_per_user
         having count(*) > t.max_unfinished_per_user
          limit 1) o on true;
  if unfinished > global_limit then
    raise exception 'too many unfinished jobs: % pending or processing, the limit is %',
      unfinished, global_limit
      using errcode = 'PT429',
            hint = 'wait for some to finish or cancel them, then retry';
  end if;
  if over_name is not null then
    raise exception 'too many unfinished "%" jobs: % pending or processing, the limit is %',
      over_name, over_count, over_limit
      using errcode = 'PT429',
            hint = 'wait for some to finish or cancel them, then retry';
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

-- Trigger functions fire whatever their EXECUTE privilege; revoking it only stops anyone from
-- attaching them to a table of their own.
revoke execute on function
  jobhook.jobs_before_insert(),
  jobhook.jobs_check_quota()
from public;

-- A client insert's statement triggers run fewer statements: the quota reads both limits in one,
-- the doorbell reads its due jobs and whether runners watch for them in one.

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
  -- API.
  if exists (
    select from pg_catalog.pg_roles
     where rolname = inserting_role and (rolsuper or rolbypassrls)
  ) or uid is null then
    return null;
  end if;

  -- Concurrent inserts by one user cannot see each other's uncommitted rows: they queue here,
  -- per user, until the first commits; the count below then sees its jobs.
  insert into jobhook.quota_locks as q (user_id) values (uid)
  on conflict (user_id) do update set touched_at = now();

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

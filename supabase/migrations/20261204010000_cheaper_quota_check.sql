-- The quota trigger does less per client insert: the API's own roles skip the catalogue look
-- for roles that bypass RLS, and a user who already has a quota row updates it instead of
-- upserting it (an upsert that finds its row locks it first: one more WAL record).

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

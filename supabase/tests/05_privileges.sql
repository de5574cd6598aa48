-- Who may call what: nothing in the jobhook schema is callable by the API roles, and the
-- transitions are callable by service_role.
begin;
\ir helpers/setup.psql
select plan(4);

select is_empty(
  $$select p.oid::regprocedure::text
      from pg_proc p
     where p.pronamespace = 'jobhook'::regnamespace
       and (has_function_privilege('anon', p.oid, 'execute')
            or has_function_privilege('authenticated', p.oid, 'execute'))$$,
  'no jobhook function is executable by anon or authenticated'
);

select is_empty(
  $$select p.oid::regprocedure::text
      from pg_proc p
     where p.pronamespace = 'jobhook'::regnamespace
       and p.prosecdef
       and not exists (
         select from unnest(p.proconfig) c where c like 'search_path=%'
       )$$,
  'every security definer function in jobhook pins its search_path'
);

select ok(
  has_function_privilege('service_role', 'jobhook.claim(uuid[], text)', 'execute')
  and has_function_privilege('service_role', 'jobhook.complete_many(jsonb)', 'execute')
  and has_function_privilege('service_role', 'jobhook.sweep()', 'execute'),
  'service_role runs the transitions and the sweep'
);

select is_empty(
  $$select c.relname
      from pg_class c
     where c.relnamespace = 'public'::regnamespace
       and c.relkind = 'r'
       and not c.relrowsecurity
       and has_table_privilege('authenticated', c.oid, 'select')$$,
  'every public table a client can read has row-level security'
);

select * from finish();
rollback;

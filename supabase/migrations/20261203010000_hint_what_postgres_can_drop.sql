-- The doorbell's warning about a trigger planted on pg_net's queue named a remedy postgres does
-- not have on hosted Supabase: net.http_request_queue is supabase_admin's, and DROP TRIGGER needs
-- the table's owner. Dropping the trigger's function with CASCADE (as a member of its owner, which
-- postgres can become for any role but a superuser) takes the trigger along, and supautils lets
-- postgres drop and create pg_net; the hint now says so. Nothing else changes.
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

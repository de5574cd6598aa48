-- Stand-in for supabase/pg_net 0.20.4, sql/pg_net.sql: the same schema, tables, defaults and
-- checks. What pg_net does in C is done here in SQL (URL encoding) or by jobhook's delivery
-- worker (sending): net.wake() becomes a NOTIFY, which PostgreSQL delivers only after commit and
-- never for a rolled-back transaction, the same contract as pg_net's at-commit wake.

create schema if not exists net;

create domain net.http_method as text
check (
  value ilike 'get'
  or value ilike 'post'
  or value ilike 'delete'
);

-- Unlogged, as upstream: queued requests and responses do not survive a crash.
create unlogged table net.http_request_queue (
  id bigserial,
  method net.http_method not null,
  url text not null,
  headers jsonb,
  body bytea,
  timeout_milliseconds int not null
);

create unlogged table net._http_response (
  id bigint,
  status_code integer,
  content_type text,
  headers jsonb,
  content text,
  timed_out bool,
  error_msg text,
  created timestamptz not null default now()
);

create index on net._http_response (created);

-- Upstream asks pg_stat_activity for the background worker; the delivery worker identifies
-- itself with this application_name.
create function net.check_worker_is_up()
returns void
language plpgsql
as $$
begin
  if not exists (select from pg_stat_activity where application_name = 'pg_net worker') then
    raise exception using
      message = 'the pg_net background worker is not up',
      detail = 'the pg_net background worker is down due to an internal error and cannot process requests',
      hint = 'make sure that you didn''t modify any of pg_net internal tables';
  end if;
end
$$;

create function net.wake()
returns void
language sql
as $$
  select pg_notify('pg_net_wake', '')
$$;

-- Percent-encoding as curl_easy_escape: everything but unreserved characters (RFC 3986).
create function net._urlencode_string(string varchar)
returns text
language sql
immutable
as $$
  select coalesce(string_agg(
    case when ch ~ '^[A-Za-z0-9_.~-]$' then ch
         else upper(regexp_replace(encode(convert_to(ch, 'UTF8'), 'hex'), '(..)', '%\1', 'g'))
    end, '' order by n), '')
  from regexp_split_to_table(string, '') with ordinality as c (ch, n)
$$;

create function net._encode_url_with_params_array(url text, params_array text[])
returns text
language sql
immutable
as $$
  select case
    when coalesce(cardinality(params_array), 0) = 0 then url
    when position('?' in url) > 0 then url || '&' || array_to_string(params_array, '&')
    else url || '?' || array_to_string(params_array, '&')
  end
$$;

create function net.http_get(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds int default 5000
)
returns bigint
language plpgsql
as $$
declare
  request_id bigint;
  params_array text[];
begin
  select coalesce(array_agg(net._urlencode_string(key) || '=' || net._urlencode_string(value)), '{}')
    into params_array
    from jsonb_each_text(params);

  insert into net.http_request_queue (method, url, headers, timeout_milliseconds)
  values ('GET', net._encode_url_with_params_array(url, params_array), headers, timeout_milliseconds)
  returning id into request_id;

  perform net.wake();
  return request_id;
end
$$;

create function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds int default 5000
)
returns bigint
language plpgsql
as $$
declare
  request_id bigint;
  params_array text[];
  content_type text;
begin
  select header_value into content_type
    from jsonb_each_text(coalesce(headers, '{}'::jsonb)) r (header_name, header_value)
   where lower(header_name) = 'content-type'
   limit 1;

  if content_type is null then
    select headers || '{"Content-Type": "application/json"}'::jsonb into headers;
  end if;

  if content_type <> 'application/json' then
    raise exception 'Content-Type header must be "application/json"';
  end if;

  select coalesce(array_agg(net._urlencode_string(key) || '=' || net._urlencode_string(value)), '{}')
    into params_array
    from jsonb_each_text(params);

  -- The bytes on the wire are exactly convert_to(body::text, 'UTF8'); signers rely on it.
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values ('POST', net._encode_url_with_params_array(url, params_array), headers,
          convert_to(body::text, 'UTF8'), timeout_milliseconds)
  returning id into request_id;

  perform net.wake();
  return request_id;
end
$$;

create function net.http_delete(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds int default 5000,
  body jsonb default null
)
returns bigint
language plpgsql
as $$
declare
  request_id bigint;
  params_array text[];
begin
  select coalesce(array_agg(net._urlencode_string(key) || '=' || net._urlencode_string(value)), '{}')
    into params_array
    from jsonb_each_text(params);

  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values ('DELETE', net._encode_url_with_params_array(url, params_array), headers,
          convert_to(body::text, 'UTF8'), timeout_milliseconds)
  returning id into request_id;

  perform net.wake();
  return request_id;
end
$$;

create type net.request_status as enum ('PENDING', 'SUCCESS', 'ERROR');

create type net.http_response as (
  status_code integer,
  headers jsonb,
  body text
);

create type net.http_response_result as (
  status net.request_status,
  message text,
  response net.http_response
);

create function net._http_collect_response(request_id bigint, async bool default true)
returns net.http_response_result
language plpgsql
as $$
declare
  rec net._http_response;
begin
  if not async then
    while rec is null loop
      select * into rec from net._http_response where id = request_id;
      if rec is null then
        perform pg_sleep(0.05);
      end if;
    end loop;
  end if;

  select * into rec from net._http_response where id = request_id;
  if rec is null or rec.error_msg is not null then
    return ('ERROR', coalesce(rec.error_msg, 'request matching request_id not found'), null)
      ::net.http_response_result;
  end if;
  return ('SUCCESS', 'ok', (rec.status_code, rec.headers, rec.content)::net.http_response)
    ::net.http_response_result;
end
$$;

grant usage on schema net to public;
grant all on all sequences in schema net to public;
grant all on all tables in schema net to public;

-- Function security as upstream 0.20.4 leaves it: the request functions are SECURITY INVOKER
-- (since sql/pg_net--0.11.0--0.11.1.sql), so a request is queued with the caller's rights and a
-- trigger anyone attaches to the queue (the tables are granted to PUBLIC above) runs as that
-- caller. Supabase's image (supabase/postgres, extensions.grant_pg_net_access, run on
-- `create extension pg_net`) made them SECURITY DEFINER only for pg_net before 0.12; what it
-- still does is take execute away from PUBLIC and give it to its own roles, mirrored here.
revoke all on function net.http_get(text, jsonb, jsonb, int) from public;
revoke all on function net.http_post(text, jsonb, jsonb, jsonb, int) from public;
grant execute on function net.http_get(text, jsonb, jsonb, int) to postgres, anon, authenticated, service_role;
grant execute on function net.http_post(text, jsonb, jsonb, jsonb, int) to postgres, anon, authenticated, service_role;

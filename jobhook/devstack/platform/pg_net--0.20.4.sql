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

-- Upstream asks pg_stat_activity for the background worker by its backend type (sql/pg_net.sql:21-30);
-- the delivery worker is a client, and names itself as pg_net's worker does (src/worker.c:259).
create function net.check_worker_is_up()
returns void
language plpgsql
as $$
begin
  if not exists (select from pg_stat_activity where application_name = 'pg_net 0.20.4') then
    raise exception using
      message = 'the pg_net background worker is not up',
      detail = 'the pg_net background worker is down due to an internal error and cannot process requests',
      hint = 'make sure that you didn''t modify any of pg_net internal tables';
  end if;
end
$$;
comment on function net.check_worker_is_up() is 'raises an exception if the pg_net background worker is not up, otherwise it doesn''t return anything';

-- Polls for the response every 50 ms, as upstream (sql/pg_net.sql:50-73).
create function net._await_response(request_id bigint)
returns bool
language plpgsql
as $$
begin
  while not exists (select from net._http_response r where r.id = request_id) loop
    perform pg_sleep(0.05);
  end loop;
  return true;
end
$$;

-- Percent-encoding as curl_escape (src/util.c:11-22): everything but unreserved characters
-- (RFC 3986), and NULL for NULL, so a parameter whose value is null is dropped from the URL.
create function net._urlencode_string(string varchar)
returns text
language sql
immutable
as $$
  select case when string is null then null else (
    select coalesce(string_agg(
      case when ch ~ '^[A-Za-z0-9_.~-]$' then ch
           else upper(regexp_replace(encode(convert_to(ch, 'UTF8'), 'hex'), '(..)', '%\1', 'g'))
      end, '' order by n), '')
    from regexp_split_to_table(string, '') with ordinality as c (ch, n)
  ) end
$$;

-- Upstream hands the URL to curl_url_set(CURLUPART_URL, url, 0) and appends each non-null
-- parameter with CURLU_APPENDQUERY (src/util.c:24-56), so a URL curl cannot parse fails the
-- calling statement with 'invalid URL "<url>": <curl_url_strerror>' (src/errors.h:30-35), and
-- the URL queued is curl's normalized form (scheme lowercased, "/" for an empty path, dot
-- segments removed, an empty port, query or fragment dropped). This is libcurl 7.88's parser
-- for what a webhook URL can hold; tests/test_pgnet_url.py holds it against libcurl itself.
create function net._encode_url_with_params_array(url text, params_array text[])
returns text
language plpgsql
immutable
as $$
declare
  scheme text;
  rest text;
  slashes int;
  authority text;
  userinfo text := null;
  hostport text;
  host text;
  port text := '';
  path text;
  query text := null;
  fragment text := null;
  segments text[];
  kept text[] := '{}';
  i int;
  param text;
  fail text := null;
begin
  if url is null or params_array is null then
    return null;
  end if;
  scheme := substring(url from '^([A-Za-z0-9+.-]{1,40}):');
  if scheme is null then
    fail := 'Bad scheme';
  elsif lower(scheme) not in (
    'dict', 'file', 'ftp', 'ftps', 'gopher', 'gophers', 'http', 'https', 'imap', 'imaps', 'ldap',
    'ldaps', 'mqtt', 'pop3', 'pop3s', 'rtmp', 'rtmpe', 'rtmps', 'rtmpt', 'rtmpte', 'rtmpts',
    'rtsp', 'scp', 'sftp', 'smb', 'smbs', 'smtp', 'smtps', 'telnet', 'tftp'
  ) then
    fail := 'Unsupported URL scheme';
  end if;
  if fail is null and lower(scheme) = 'file' then
    return url;  -- pg_net refuses it when sending ("Unsupported protocol")
  end if;
  if fail is null then
    rest := substr(url, length(scheme) + 2);
    slashes := length(rest) - length(ltrim(rest, '/'));
    if slashes not between 1 and 3 then
      fail := 'Unsupported number of slashes following scheme';
    end if;
  end if;
  if fail is null then
    rest := substr(rest, slashes + 1);
    authority := substring(rest from '^[^/?#]*');
    rest := substr(rest, length(authority) + 1);
    if position('@' in authority) > 0 then
      userinfo := substring(authority from '^(.*)@');
      hostport := substring(authority from '^.*@(.*)$');
    else
      hostport := authority;
    end if;
    if left(hostport, 1) = '[' then
      host := substring(hostport from '^(\[[0-9A-Fa-f:.]+(%[^]]+)?\])');
      if host is null then
        fail := 'Bad IPv6 address';
      else
        port := substr(hostport, length(host) + 1);
        if port <> '' and left(port, 1) <> ':' then
          fail := 'Bad IPv6 address';
        end if;
        port := ltrim(port, ':');
      end if;
    else
      host := split_part(hostport, ':', 1);
      port := substr(hostport, length(host) + 2);
    end if;
  end if;
  if fail is null and port <> '' and (port !~ '^[0-9]{1,5}$' or port::int > 65535) then
    fail := 'Port number was not a decimal number between 0 and 65535';
  end if;
  if fail is null and host = '' then
    fail := 'No host part in the URL';
  end if;
  if fail is null and host ~ '[[:space:][:cntrl:]/:#?!@{}\\$''"^`*<>=;,+&()%]' and left(host, 1) <> '[' then
    fail := 'Bad hostname';
  end if;
  if fail is null then
    path := substring(rest from '^[^?#]*');
    rest := substr(rest, length(path) + 1);
    if left(rest, 1) = '?' then
      query := substring(rest from '^\?([^#]*)');
      rest := substr(rest, length(query) + 2);
    end if;
    if left(rest, 1) = '#' then
      fragment := substr(rest, 2);
    end if;
    if path ~ '[[:space:][:cntrl:]]' then
      fail := 'Bad path';
    elsif query ~ '[[:space:][:cntrl:]]' then
      fail := 'Bad query';
    elsif fragment ~ '[[:space:][:cntrl:]]' then
      fail := 'Bad fragment';
    end if;
  end if;
  if fail is not null then
    raise exception using errcode = 'XX000', message = format('invalid URL "%s": %s', url, fail);
  end if;

  -- RFC 3986 5.2.4, as curl applies it without CURLU_PATH_AS_IS.
  segments := string_to_array(substr(coalesce(nullif(path, ''), '/'), 2), '/');
  for i in 1 .. coalesce(cardinality(segments), 0) loop
    if segments[i] = '.' then
      if i = cardinality(segments) then kept := kept || ''::text; end if;
    elsif segments[i] = '..' then
      kept := kept[1:cardinality(kept) - 1];
      if i = cardinality(segments) then kept := kept || ''::text; end if;
    else
      kept := kept || segments[i];
    end if;
  end loop;
  path := '/' || array_to_string(kept, '/');

  query := nullif(query, '');
  foreach param in array params_array loop
    if param is not null then
      query := case when query is null then param else query || '&' || param end;
    end if;
  end loop;

  return lower(scheme) || '://'
    || coalesce(userinfo || '@', '')
    || host
    || case when port <> '' then ':' || port else '' end
    || path
    || coalesce('?' || query, '')
    || coalesce('#' || nullif(fragment, ''), '');
end
$$;

-- Upstream reloads the configuration and tells its worker to start over (src/worker.c:62-70).
-- A NOTIFY reaches the delivery worker only at commit; pg_reload_conf() is for superusers,
-- where upstream's C code calls it for any caller, hence SECURITY DEFINER here.
create function net.worker_restart()
returns bool
language plpgsql
security definer
set search_path = ''
as $$
declare
  reloaded bool := pg_catalog.pg_reload_conf();
begin
  perform pg_catalog.pg_notify('pg_net_wake', 'restart');
  return reloaded;
end
$$;

-- Upstream sleeps on a condition variable until its worker runs (src/worker.c:72-89), with no
-- time limit; here it looks for the worker's session every 50 ms (with a fresh view of
-- pg_stat_activity each time, which a transaction otherwise keeps).
create function net.wait_until_running()
returns void
language plpgsql
as $$
begin
  loop
    perform pg_stat_clear_snapshot();
    exit when exists (select from pg_stat_activity where application_name = 'pg_net 0.20.4');
    perform pg_sleep(0.05);
  end loop;
end
$$;
comment on function net.wait_until_running() is 'waits until the worker is running';

-- src/worker.c:94-131: the worker is woken at commit, never for a rolled-back transaction.
create function net.wake()
returns void
language sql
as $$
  select pg_notify('pg_net_wake', '')
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

-- sql/pg_net.sql:288-337.
create function net._http_collect_response(request_id bigint, async bool default true)
returns net.http_response_result
language plpgsql
as $$
declare
  rec net._http_response;
begin
  if not async then
    perform net._await_response(request_id);
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

-- Deprecated upstream (sql/pg_net.sql:339-353): it raises its notice, then fails, because its
-- body runs a SELECT whose result goes nowhere ("query has no destination for result data").
-- Mirrored as it behaves, so code that calls it fails here as it does on hosted Supabase.
create function net.http_collect_response(request_id bigint, async bool default true)
returns net.http_response_result
language plpgsql
as $$
begin
  raise notice 'The net.http_collect_response function is deprecated.';
  select net._http_collect_response(request_id, async);
end
$$;

-- Privileges as sql/pg_net.sql:355-357 leave them: the schema, tables and sequences to PUBLIC,
-- and every function with PostgreSQL's default EXECUTE for PUBLIC. Since 0.12 the request
-- functions are SECURITY INVOKER (sql/pg_net--0.11.0--0.12.0.sql), so a request is queued with
-- the caller's rights. Supabase's image adds only USAGE on the schema for its own roles, at
-- `create extension` (the event trigger in platform.sql, after supabase/postgres
-- migrations/db/migrations/20250220051611_pg_net_perms_fix.sql, which from 0.12 on no longer
-- makes the functions definer nor revokes them from PUBLIC).
grant usage on schema net to public;
grant all on all sequences in schema net to public;
grant all on all tables in schema net to public;

-- The delivery worker's queries, loaded once by jobhook.devstack.delivery. Each starts with
-- `-- name: <name>`. They are the statements pg_net's worker prepares in src/core.c (v0.20.4).

-- The stand-in net.wake() notifies this channel (platform/pg_net--0.20.4.sql).
-- name: listen
listen pg_net_wake;

-- pg_net's settings as the worker would read them (src/worker.c:496-509): unset means the
-- default; ALTER SYSTEM plus a reload reaches this session as it reaches the C worker's SIGHUP.
-- name: settings
select coalesce(nullif(current_setting('pg_net.batch_size', true), ''), '200')::int as batch_size,
       coalesce(nullif(current_setting('pg_net.ttl', true), ''), '6 hours')::interval as ttl;

-- Where the worker should be: upstream connects to pg_net.database_name as pg_net.username
-- (src/worker.c:258); empty or unset here means where the worker's URL already points.
-- name: placement
select nullif(current_setting('pg_net.database_name', true), '') is distinct from null
         and current_setting('pg_net.database_name', true) <> current_database() as move,
       coalesce(nullif(current_setting('pg_net.database_name', true), ''), current_database())
         as database_name,
       coalesce(nullif(current_setting('pg_net.username', true), ''), current_user::text)
         as username,
       coalesce(nullif(current_setting('pg_net.username', true), ''), current_user::text)
         <> current_user::text as move_user;

-- Upstream skips a pass when schema `net` or either table is missing (src/worker.c:208-231).
-- name: tables_present
select to_regclass('net.http_request_queue') is not null
   and to_regclass('net._http_response') is not null as present;

-- src/core.c:122-158: the oldest expired responses first, at most a batch of them.
-- name: expire
with rows as (
  select ctid from net._http_response
   where created < now() - %(ttl)s::interval
   order by created
   limit %(batch_size)s
)
delete from net._http_response r using rows where r.ctid = rows.ctid;

-- src/core.c:160-190: the oldest requests first, removed from the queue as they are taken.
-- Headers come back as the "name: value" lines curl is given (src/core.c:172).
-- name: consume
with rows as (
  select id from net.http_request_queue order by id limit %(batch_size)s
)
delete from net.http_request_queue q
 using rows
 where q.id = rows.id
returning q.id, q.method, q.url, q.timeout_milliseconds,
          array(select key || ': ' || value from jsonb_each_text(q.headers)) as headers,
          q.body;

-- src/core.c:297-316 inserts one row per finished transfer; here one statement takes many.
-- name: record
insert into net._http_response
  (id, status_code, content, headers, content_type, timed_out, error_msg)
select * from unnest(
  %(ids)s::bigint[], %(status_codes)s::integer[], %(contents)s::text[], %(headers)s::jsonb[],
  %(content_types)s::text[], %(timed_out)s::boolean[], %(error_msgs)s::text[]
);

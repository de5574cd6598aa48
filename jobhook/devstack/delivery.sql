-- The delivery worker's queries, loaded once by jobhook.devstack.delivery. Each starts with
-- `-- name: <name>`. They are the statements pg_net's worker prepares in src/core.c (v0.20.4).

-- The stand-in net.wake() notifies this channel (platform/pg_net--0.20.4.sql).
-- name: listen
listen pg_net_wake;

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

-- One pass of the worker's loop, sent as one message: pg_net's C worker runs these statements
-- in-process, where they cost no round trip, so the stand-in sends them together.
-- Its settings as the worker would read them (src/worker.c:496-509): unset means the default,
-- and ALTER SYSTEM plus a reload reaches this session as it reaches the C worker's SIGHUP; a
-- batch size or ttl given to the stand-in overrides them.
-- First (src/core.c:122-158) the oldest expired responses, at most a batch of them; then
-- (src/core.c:160-190) the oldest requests, removed from the queue as they are taken, at most a
-- batch and at most `room`. Headers come back as the "name: value" lines curl is given
-- (src/core.c:172).
-- Upstream skips a pass when schema `net` or either table is missing (src/worker.c:208-231);
-- here the statements then fail with undefined_table or invalid_schema_name, and the worker
-- skips it too.
-- name: pass
with settings as (
  select coalesce(%(batch_size)s::int,
                  nullif(current_setting('pg_net.batch_size', true), '')::int, 200) as batch_size,
         coalesce(%(ttl)s::interval,
                  nullif(current_setting('pg_net.ttl', true), '')::interval,
                  '6 hours') as ttl
), rows as (
  select r.ctid from net._http_response r, settings s
   where r.created < now() - s.ttl
   order by r.created
   limit (select s.batch_size from settings s)
)
delete from net._http_response r using rows where r.ctid = rows.ctid;
with settings as (
  select coalesce(%(batch_size)s::int,
                  nullif(current_setting('pg_net.batch_size', true), '')::int, 200) as batch_size
), rows as (
  select q.id from net.http_request_queue q
   order by q.id
   limit (select least(s.batch_size, coalesce(%(room)s::int, s.batch_size)) from settings s)
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

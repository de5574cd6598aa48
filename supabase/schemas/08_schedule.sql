-- Run the sweep every minute. pg_cron lives in pg_catalog on Supabase and can only be created in
-- the database named by cron.database_name ('postgres' there and in the dev stack). The schedule
-- uses cron syntax, which pg_cron 1.4 (Debian) and 1.6 (Supabase) both accept; scheduling under a
-- name replaces an earlier schedule of that name, so re-running this is harmless.
create extension if not exists pg_cron with schema pg_catalog;
grant usage on schema cron to postgres;

select cron.schedule('jobhook-sweep', '* * * * *', 'select jobhook.sweep()');

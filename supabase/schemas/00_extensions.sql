-- The extensions jobhook builds on.
--
-- This folder is the current text of every SQL object jobhook owns, one file per concept, applied
-- in file name order (the supabase CLI's declarative schema layout). The migrations in
-- supabase/migrations are the forward-only deltas that bring a live database to this text;
-- tests/test_schemas.py builds one database from each and fails until both are the same.
--
-- Runs unchanged on hosted Supabase and on the local dev stack. The extensions below ship with
-- Supabase (pgcrypto and Vault are enabled in every project; pg_net, pg_jsonschema and pg_cron
-- are available to enable); the dev stack provides stand-ins with the same names, so nothing
-- here branches.
-- pg_cron can only be created in one database, so it comes last, with the schedule
-- (08_schedule.sql).

create extension if not exists pgcrypto with schema extensions;
create extension if not exists pg_net with schema extensions;
-- Checks each insert's parameters against its job type's JSON Schema (03_enqueue.sql).
create extension if not exists pg_jsonschema with schema extensions;
create extension if not exists supabase_vault with schema vault;

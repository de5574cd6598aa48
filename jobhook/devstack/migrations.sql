-- The migration runner's queries (jobhook.devstack.migrations), loaded once, by name. The
-- history table is the supabase CLI's, so `supabase migration list` agrees with the dev stack.

-- name: applied_versions
select version from supabase_migrations.schema_migrations;

-- name: record_migration
insert into supabase_migrations.schema_migrations (version, name, statements)
values (%(version)s, %(name)s, %(statements)s);

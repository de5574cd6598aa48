-- Deploys overlap: the old version's containers keep running while the new one starts, and each
-- start used to disable every type it did not declare itself. A type now stays enabled while a
-- live deployment serves it: each one renews `served_until` for its own types every minute, and
-- only a type that no deployment has renewed in time is disabled.

-- Null: the type was written by hand (or by a test) and no deployment manages it.
alter table jobhook.job_types add column served_until timestamptz;
comment on column jobhook.job_types.served_until is
  'Renewed by each live deployment for the types it runs; once past, the type is disabled.';

-- Types synced before this migration: as if served until a few minutes from now, so that a live
-- deployment renews them and the types no deployment runs any more are disabled then.
update jobhook.job_types set served_until = now() + interval '5 minutes' where enabled;

-- A client that sends user_id gets PostgreSQL's bare "permission denied for table jobs": column
-- privileges are checked before any trigger could say more, so the column says it, in the
-- description Supabase Studio and PostgREST's OpenAPI show.
comment on column public.jobs.user_id is
  'The owner, set from the caller''s token (auth.uid()). Clients must not send it: an insert or update naming it fails with "permission denied for table jobs" (42501).';

-- Failure kinds are one vocabulary: an enum in SQL, mirrored once in Python
-- (jobhook.jobs.FailureKind), instead of free strings on both sides.

-- Why an attempt did not complete: the `kind` of each entry of public.jobs.errors. Mirrored once
-- in Python by jobhook.jobs.FailureKind (tests/test_failure_kinds.py holds the two equal), whose
-- values say who records each.
create type jobhook.failure_kind as enum (
  'error', 'timeout', 'invalid_parameters', 'invalid_payload', 'unknown_job_type', 'bad_result',
  'released', 'lease_expired', 'undelivered', 'not_started', 'invalid_run_at'
);

-- One entry of `errors`, the append-only history of attempts that did not complete. The kind
-- is one of jobhook.failure_kind: any other is refused here, whoever writes it.
create or replace function jobhook.error_entry(attempt integer, message text, kind text)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_array(jsonb_build_object(
    'attempt', attempt, 'at', now(), 'message', message, 'kind', kind::jobhook.failure_kind
  ))
$$;

-- Named queries the runtime runs, loaded once by jobhook.store. Each starts with `-- name: <name>`.
-- Every transition is one call of its SQL function: Python never composes a status update.

-- name: claim
select id, user_id, job_type, payload, attempt, max_attempts, lease_expires_at,
       started_at - greatest(created_at, run_at) as start_latency
  from jobhook.claim(%(ids)s::uuid[], %(worker_id)s);

-- name: heartbeat
select cancel_requested, lease_expires_at
  from jobhook.heartbeat(%(id)s, %(attempt)s, %(progress)s, %(message)s);

-- name: complete
select jobhook.complete(%(id)s, %(attempt)s, %(result)s, %(message)s);

-- name: fail
select jobhook.fail(%(id)s, %(attempt)s, %(message)s, %(retryable)s, %(kind)s)::text;

-- name: acknowledge_cancel
select jobhook.cancel(%(id)s, %(attempt)s)::text;

-- name: dispatch_due
select jobhook.dispatch_due();

-- name: lease_seconds
select lease_seconds from jobhook.settings;

-- name: set_stuck_timeout
update jobhook.settings set stuck_timeout_minutes = %(minutes)s;

-- name: vault_secret
select decrypted_secret from vault.decrypted_secrets where name = %(name)s;

-- name: ping
select 1;

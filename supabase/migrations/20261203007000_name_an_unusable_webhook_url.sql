-- /ready, the health panel and `jobhook doctor` name a webhook URL the doorbell cannot ring
-- (jobhook.webhook_url_problem), without reading the URL.

-- What is wrong with the webhook URL in Vault (jobhook.webhook_url_problem), or null when it
-- is fine or not set: the reason only, never the URL.
create or replace function jobhook.webhook_url_unusable()
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select jobhook.webhook_url_problem(c.url) from jobhook.webhook_config() c where c.url is not null
$$;

revoke execute on function jobhook.webhook_url_unusable() from public;
grant execute on function jobhook.webhook_url_unusable() to jobhook_operator, service_role;

-- Alerts (jobhook.alerts): when each kind was last sent, so that every app container may watch
-- and yet one message per kind goes out per interval, whichever container sends it.
create table jobhook.alerts_sent (
  kind text primary key
    constraint alerts_sent_kind_length check (length(kind) between 1 and 63),
  sent_at timestamptz not null
);
comment on table jobhook.alerts_sent is
  'jobhook alerts: the last time each kind of alert was sent (the rate limit across containers).';
revoke all on jobhook.alerts_sent from public, anon, authenticated;

-- Whether the caller may send an alert of this kind now: true for one caller per interval.
create or replace function jobhook.take_alert_turn(kind text, every_seconds double precision)
returns boolean
language sql
security definer
set search_path = ''
as $$
  insert into jobhook.alerts_sent as a (kind, sent_at)
  values (take_alert_turn.kind, now())
  on conflict (kind) do update set sent_at = now()
   where a.sent_at <= now() - make_interval(secs => take_alert_turn.every_seconds)
  returning true
$$;

revoke execute on function jobhook.take_alert_turn(text, double precision) from public;
grant execute on function jobhook.take_alert_turn(text, double precision)
  to jobhook_operator, service_role;

-- Local data for the dev stack and `supabase db reset`: the demo user that `jobhook demo`,
-- `jobhook token` and the README examples act as. Safe to run again.
insert into auth.users (id, aud, role, email, raw_app_meta_data, raw_user_meta_data)
values (
  '00000000-0000-4000-8000-00000000d3e0',
  'authenticated',
  'authenticated',
  'demo@jobhook.local',
  '{"provider": "email", "providers": ["email"]}',
  '{"name": "Demo User"}'
)
on conflict (id) do nothing;

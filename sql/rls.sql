-- rls.sql: row level security for gxp's tables and its Storage bucket (the
-- seed's "RLS migration").  service_role (the key gxp-upload, gxp-control and
-- gxp-cmd use) has full access, authenticated users may read, anon gets
-- nothing; the same for the view captures_with_sensors, which reads through
-- the tables' policies, and for the control plane's tables.  Safe to run more than once; run it after sql/schema.sql.
--
-- The bucket is gxp-captures (SUPABASE_STORAGE_BUCKET's default); if you
-- use another, replace the name below.  Supabase's service_role also has
-- BYPASSRLS; the policies say the same thing explicitly, so access does not
-- hang on that attribute.

begin;

do $$
declare
	t text;
begin
	foreach t in array array['devices', 'captures', 'sensor_readings',
	    'device_status', 'device_errors', 'device_publish_log',
	    'device_configs', 'device_commands', 'device_command_logs']
	loop
		execute format('alter table public.%I enable row level security', t);
		execute format('drop policy if exists gxp_service_role_all on public.%I', t);
		execute format('create policy gxp_service_role_all on public.%I '
		    'for all to service_role using (true) with check (true)', t);
		execute format('drop policy if exists gxp_authenticated_read on public.%I', t);
		execute format('create policy gxp_authenticated_read on public.%I '
		    'for select to authenticated using (true)', t);
		execute format('revoke all on public.%I from anon', t);
		execute format('revoke insert, update, delete, truncate on public.%I '
		    'from authenticated', t);
		execute format('grant select on public.%I to authenticated', t);
		execute format('grant select, insert, update, delete on public.%I '
		    'to service_role', t);
	end loop;
end
$$;

-- Commands are queued by operators: from the Supabase dashboard and the SQL
-- editor (as postgres, whom no policy holds), with gxp-cmd or their own
-- backend (the secret key, service_role).  authenticated only reads them:
-- any signed-in user of an app on this project could otherwise make every
-- camera take photos and stay awake, or put one to sleep for a year.  To let
-- your app's users queue commands, give them a policy of your own, such as
--   create policy app_queue on public.device_commands for insert
--     to authenticated with check (status = 'queued' and sent_at is null);
--   grant insert (device_id, command_type, command_payload, expires_at)
--     on public.device_commands to authenticated;
-- (the checks in schema.sql still refuse a type or payload gxp cannot send).

-- The dashboards' view, granted as its table; with security_invoker (see
-- schema.sql) the table's policies decide which rows a reader sees.
revoke all on public.captures_with_sensors from anon;
revoke insert, update, delete, truncate on public.captures_with_sensors from authenticated;
grant select on public.captures_with_sensors to authenticated, service_role;

-- The bucket: private (no public URLs).
insert into storage.buckets (id, name, public)
values ('gxp-captures', 'gxp-captures', false)
on conflict (id) do nothing;

drop policy if exists "gxp service_role reads the bucket" on storage.buckets;
create policy "gxp service_role reads the bucket" on storage.buckets
	for select to service_role using (id = 'gxp-captures');

drop policy if exists "gxp service_role full access" on storage.objects;
create policy "gxp service_role full access" on storage.objects
	for all to service_role
	using (bucket_id = 'gxp-captures') with check (bucket_id = 'gxp-captures');

drop policy if exists "gxp authenticated read" on storage.objects;
create policy "gxp authenticated read" on storage.objects
	for select to authenticated using (bucket_id = 'gxp-captures');

commit;

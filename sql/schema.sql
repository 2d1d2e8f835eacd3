-- schema.sql: the tables gxp writes (SPEC.md, "The database the user
-- already has"), for a fresh Supabase project.  Safe to run more than once
-- and on a project that already has these tables: nothing is dropped or
-- rewritten; missing tables, columns, the unique keys gxp's upserts rely
-- on, the indexes behind the Monitoring queries and the dashboards' view
-- (captures_with_sensors) are added, and the device control plane's tables
-- (devices.next_wake_at, device_configs, device_commands,
-- device_command_logs; gxp-control(1)).
--
-- Run it in the Supabase SQL editor (or psql) before sql/rls.sql.

begin;

create table if not exists public.devices (
	device_id uuid primary key default gen_random_uuid(),
	device_hw_id text not null,
	model text,
	last_seen_at timestamptz,
	last_ip text,
	created_at timestamptz not null default now()
);

create table if not exists public.captures (
	capture_id uuid primary key default gen_random_uuid(),
	device_id uuid not null references public.devices (device_id) on delete cascade,
	device_capture_id text not null,
	captured_at timestamptz,
	image_bytes integer check (image_bytes >= 0),
	chunk_size_bytes integer check (chunk_size_bytes > 0),
	total_chunks integer check (total_chunks >= 0),
	img_format text,
	ingest_status text not null default 'assembling'
		check (ingest_status in ('assembling', 'stored', 'failed')),
	ingest_meta jsonb,
	ingest_error text,
	storage_path text,
	image_sha256 text check (image_sha256 ~ '^[0-9a-f]{64}$'),
	sensor_data jsonb,
	created_at timestamptz not null default now(),
	image_url text
);

create table if not exists public.sensor_readings (
	id uuid primary key default gen_random_uuid(),
	device_id uuid not null references public.devices (device_id) on delete cascade,
	capture_id uuid references public.captures (capture_id) on delete set null,
	temperature_c double precision,
	humidity_pct double precision,
	pressure_hpa double precision,
	gas_kohm double precision,
	created_at timestamptz not null default now()
);

create table if not exists public.device_status (
	id uuid primary key default gen_random_uuid(),
	device_id uuid not null references public.devices (device_id) on delete cascade,
	status text,
	pending_count integer,
	raw jsonb,
	created_at timestamptz not null default now()
);

create table if not exists public.device_errors (
	id uuid primary key default gen_random_uuid(),
	device_id uuid references public.devices (device_id) on delete cascade,
	capture_id uuid references public.captures (capture_id) on delete set null,
	error_code integer not null,
	severity text not null default 'error',
	message text,
	details jsonb,
	occurred_at timestamptz not null default now()
);

create table if not exists public.device_publish_log (
	id uuid primary key default gen_random_uuid(),
	device_id uuid references public.devices (device_id) on delete cascade,
	topic text not null,
	direction text not null check (direction in ('in', 'out')),
	payload jsonb,
	received_at timestamptz not null default now()
);

-- The device control plane (gxp-control(1)): when each device wakes, its
-- schedule, the commands queued for it and what became of them.
alter table public.devices add column if not exists next_wake_at timestamptz;

-- One row per device; a device without one follows the SCHEDULE_*
-- settings.  Times of day are in SCHEDULE_TZ.
create table if not exists public.device_configs (
	device_id uuid primary key references public.devices (device_id) on delete cascade,
	capture_per_day integer not null default 2 check (capture_per_day between 1 and 24),
	wakeup_time_1 time,
	wakeup_time_2 time,
	wakeup_window_sec integer not null default 180
		check (wakeup_window_sec between 0 and 86400),
	test_mode boolean not null default false,
	test_interval_minutes integer not null default 5
		check (test_interval_minutes between 1 and 60),
	updated_at timestamptz not null default now()
);
alter table public.device_configs add column if not exists capture_per_day integer default 2;
alter table public.device_configs add column if not exists wakeup_time_1 time;
alter table public.device_configs add column if not exists wakeup_time_2 time;
alter table public.device_configs add column if not exists wakeup_window_sec integer default 180;
alter table public.device_configs add column if not exists test_mode boolean default false;
alter table public.device_configs add column if not exists test_interval_minutes integer default 5;

create table if not exists public.device_commands (
	command_id uuid primary key default gen_random_uuid(),
	device_id uuid not null references public.devices (device_id) on delete cascade,
	command_type text not null,
	command_payload jsonb not null default '{}',
	status text not null default 'queued',
	requested_at timestamptz not null default now(),
	sent_at timestamptz,
	expires_at timestamptz
);
alter table public.device_commands add column if not exists command_payload jsonb default '{}';
alter table public.device_commands add column if not exists status text default 'queued';
alter table public.device_commands add column if not exists requested_at timestamptz default now();
alter table public.device_commands add column if not exists sent_at timestamptz;
alter table public.device_commands add column if not exists expires_at timestamptz;

create table if not exists public.device_command_logs (
	id uuid primary key default gen_random_uuid(),
	command_id uuid references public.device_commands (command_id) on delete cascade,
	device_id uuid references public.devices (device_id) on delete cascade,
	event_type text not null,
	event_payload jsonb,
	created_at timestamptz not null default now()
);
alter table public.device_command_logs add column if not exists event_payload jsonb;
alter table public.device_command_logs add column if not exists created_at timestamptz default now();

-- Tables made by an earlier worker may lack columns gxp writes.
alter table public.devices add column if not exists model text;
alter table public.devices add column if not exists last_seen_at timestamptz;
alter table public.devices add column if not exists last_ip text;
alter table public.captures add column if not exists captured_at timestamptz;
alter table public.captures add column if not exists image_bytes integer;
alter table public.captures add column if not exists chunk_size_bytes integer;
alter table public.captures add column if not exists total_chunks integer;
alter table public.captures add column if not exists img_format text;
alter table public.captures add column if not exists ingest_status text default 'assembling';
alter table public.captures add column if not exists ingest_meta jsonb;
alter table public.captures add column if not exists ingest_error text;
alter table public.captures add column if not exists storage_path text;
alter table public.captures add column if not exists image_sha256 text;
alter table public.captures add column if not exists sensor_data jsonb;
alter table public.captures add column if not exists created_at timestamptz default now();
-- the object's Storage URL (the user's worker's later migration)
alter table public.captures add column if not exists image_url text;
-- gxp's upsert at metadata time leaves ingest_status to this default
alter table public.captures alter column ingest_status set default 'assembling';
alter table public.sensor_readings add column if not exists capture_id uuid;
alter table public.sensor_readings add column if not exists gas_kohm double precision;
alter table public.device_status add column if not exists pending_count integer;
alter table public.device_status add column if not exists raw jsonb;
alter table public.device_errors add column if not exists capture_id uuid;
alter table public.device_errors add column if not exists details jsonb;
alter table public.device_publish_log add column if not exists direction text;
alter table public.device_publish_log add column if not exists payload jsonb;

-- Row identity (gxp-upload(1)): each row of an event table carries the id
-- gxp derived from the event that caused it, and gxp inserts with
-- on_conflict=event_id and resolution=ignore-duplicates, so that a request
-- repeated after its answer was lost stores nothing twice.  Rows written
-- before have none (null never conflicts).
alter table public.sensor_readings add column if not exists event_id uuid;
alter table public.device_status add column if not exists event_id uuid;
alter table public.device_errors add column if not exists event_id uuid;
alter table public.device_publish_log add column if not exists event_id uuid;

-- The upserts' conflict targets (PostgREST on_conflict needs a unique
-- index on exactly these columns, without a WHERE); added only where none
-- exists yet.
do $$
declare
	want record;
	deferred text;
begin
	for want in
		select * from (values
			('devices', array['device_hw_id'], 'devices_device_hw_id_key'),
			('captures', array['device_id', 'device_capture_id'],
			    'captures_device_id_device_capture_id_key'),
			('sensor_readings', array['event_id'], 'sensor_readings_event_id_key'),
			('device_status', array['event_id'], 'device_status_event_id_key'),
			('device_errors', array['event_id'], 'device_errors_event_id_key'),
			('device_publish_log', array['event_id'], 'device_publish_log_event_id_key'),
			('device_configs', array['device_id'], 'device_configs_device_id_key')
		) as t (tab, cols, name)
	loop
		-- a deferrable key on these columns makes every ON CONFLICT on
		-- them fail ("does not support deferrable ... as arbiters"),
		-- whatever other key there is: say so, do not guess
		select c2.relname into deferred
		from pg_index i
		join pg_class c on c.oid = i.indrelid
		join pg_class c2 on c2.oid = i.indexrelid
		where c.relnamespace = 'public'::regnamespace and c.relname = want.tab
		and i.indisunique and not i.indimmediate
		and i.indnatts = cardinality(want.cols)
		and (select array_agg(a.attname::text order by a.attname)
		     from pg_attribute a
		     where a.attrelid = c.oid and a.attnum = any (i.indkey))
		    = (select array_agg(x order by x) from unnest(want.cols) x);
		if deferred is not null then
			raise exception 'table %: its unique key % on (%) is deferrable, and ON CONFLICT cannot use a deferrable key',
			    want.tab, deferred, array_to_string(want.cols, ', ')
			    using hint = 'drop it (alter table public.' || want.tab ||
			    ' drop constraint ' || deferred || ') and run this file again: it adds one that is not deferrable';
		end if;
		-- what ON CONFLICT takes as its arbiter: a valid unique index on
		-- plain columns, for every row
		if not exists (
			select 1
			from pg_index i
			join pg_class c on c.oid = i.indrelid
			join pg_namespace n on n.oid = c.relnamespace
			where n.nspname = 'public' and c.relname = want.tab
			and i.indisunique and i.indisvalid
			and i.indpred is null and i.indexprs is null
			and (select array_agg(a.attname::text order by a.attname)
			     from pg_attribute a
			     where a.attrelid = c.oid and a.attnum = any (i.indkey))
			    = (select array_agg(x order by x) from unnest(want.cols) x)
			and i.indnatts = cardinality(want.cols)
		) then
			-- under another name when an invalid index has that one
			execute format('alter table public.%I add constraint %I unique (%s)',
			    want.tab, case when exists (select 1 from pg_class k
			        where k.relname = want.name
			        and k.relnamespace = 'public'::regnamespace)
			    then want.name || '_arbiter' else want.name end,
			    (select string_agg(quote_ident(x), ', ') from unnest(want.cols) x));
		end if;
	end loop;
end
$$;

-- The Monitoring queries (newest first) and the foreign keys.
create index if not exists captures_created_at_idx on public.captures (created_at desc);
create index if not exists captures_device_captured_idx on public.captures (device_id, captured_at desc);
create index if not exists captures_unstored_idx on public.captures (ingest_status)
	where ingest_status <> 'stored';
create index if not exists sensor_readings_created_at_idx on public.sensor_readings (created_at desc);
create index if not exists sensor_readings_device_idx on public.sensor_readings (device_id, created_at desc);
create index if not exists sensor_readings_capture_idx on public.sensor_readings (capture_id);
create index if not exists device_status_created_at_idx on public.device_status (created_at desc);
create index if not exists device_status_device_idx on public.device_status (device_id, created_at desc);
create index if not exists device_errors_occurred_at_idx on public.device_errors (occurred_at desc);
create index if not exists device_errors_device_idx on public.device_errors (device_id, occurred_at desc);
create index if not exists device_errors_capture_idx on public.device_errors (capture_id);
create index if not exists device_publish_log_received_at_idx on public.device_publish_log (received_at desc);
create index if not exists device_publish_log_device_idx on public.device_publish_log (device_id, received_at desc);

-- The dashboards' indexes and view (the user's worker's later migrations).
-- A reading is numeric only when sensor_data holds a JSON number there, so
-- no row written by any worker can make an index, an insert or the view
-- fail; a query on the view's column can use the index of the same
-- expression.
create index if not exists captures_sensor_data_idx on public.captures using gin (sensor_data);
create index if not exists captures_temperature_idx on public.captures
	((case when jsonb_typeof(sensor_data -> 'temperature_c') = 'number'
	 then (sensor_data ->> 'temperature_c')::numeric end));
create index if not exists captures_humidity_idx on public.captures
	((case when jsonb_typeof(sensor_data -> 'humidity_pct') = 'number'
	 then (sensor_data ->> 'humidity_pct')::numeric end));

-- security_invoker: whoever queries the view is held to the captures
-- table's row level security and grants (sql/rls.sql), not its owner.  A
-- view of that name with other columns is left as it is, made an invoker's
-- view all the same.
do $$
begin
	create or replace view public.captures_with_sensors
	with (security_invoker = true) as
	select
		capture_id,
		device_id,
		device_capture_id,
		captured_at,
		image_url,
		storage_path,
		ingest_status,
		image_bytes,
		image_sha256,
		case when jsonb_typeof(sensor_data -> 'temperature_c') = 'number'
			then (sensor_data ->> 'temperature_c')::numeric end as temperature_c,
		case when jsonb_typeof(sensor_data -> 'humidity_pct') = 'number'
			then (sensor_data ->> 'humidity_pct')::numeric end as humidity_pct,
		case when jsonb_typeof(sensor_data -> 'pressure_hpa') = 'number'
			then (sensor_data ->> 'pressure_hpa')::numeric end as pressure_hpa,
		case when jsonb_typeof(sensor_data -> 'gas_kohm') = 'number'
			then (sensor_data ->> 'gas_kohm')::numeric end as gas_kohm,
		sensor_data,
		created_at
	from public.captures;
exception when invalid_table_definition then
	raise notice 'captures_with_sensors: an existing view with other columns '
	    'is kept (%)', sqlerrm;
	alter view public.captures_with_sensors set (security_invoker = true);
end
$$;

-- What gxp-control relies on, added where missing: the foreign keys to
-- devices that its queries embed (devices!inner(device_hw_id)) and checks
-- that refuse, when a command is queued, a
-- status, a type or a payload gxp-control could not send.  On older tables
-- they are added NOT VALID: rows already there are left alone (gxp-control
-- marks a bad one failed), new and changed rows are checked.  The command
-- check holds for queued commands: one that could not be sent can still be
-- marked failed, expired or cancelled.
do $$
declare
	want record;
begin
	for want in
		select * from (values
			('device_configs', 'device_configs_device_id_fkey',
			    'foreign key (device_id) references public.devices (device_id) on delete cascade'),
			('device_commands', 'device_commands_device_id_fkey',
			    'foreign key (device_id) references public.devices (device_id) on delete cascade'),
			('device_command_logs', 'device_command_logs_command_id_fkey',
			    'foreign key (command_id) references public.device_commands (command_id) on delete cascade'),
			('device_commands', 'device_commands_status_check',
			    'check (status in (''queued'', ''sent'', ''expired'', ''cancelled'', ''failed''))'),
			('device_commands', 'device_commands_command_check',
			    'check (status <> ''queued'' or case command_type
				when ''capture_image'' then jsonb_typeof(command_payload) = ''object''
				when ''send_image'' then jsonb_typeof(command_payload -> ''image_name'') = ''string''
				    and command_payload ->> ''image_name'' ~ ''^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$''
				when ''next_wake'' then jsonb_typeof(command_payload -> ''wake_time'') = ''string''
				    and command_payload ->> ''wake_time'' ~
				    ''^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}([.,][0-9]+)?[Zz]?([+-][0-9]{2}(:?[0-9]{2})?)?$''
				else false end)')
		) as t (tab, name, def)
	loop
		-- a foreign key of the same columns under another name will do
		if not exists (select 1 from pg_constraint c join pg_class r on r.oid = c.conrelid
		    join pg_namespace n on n.oid = r.relnamespace
		    where n.nspname = 'public' and r.relname = want.tab and (c.conname = want.name
		    or (c.contype = 'f' and want.def like 'foreign key%' and
		    (select array_agg(a.attname::text) from pg_attribute a
		     where a.attrelid = r.oid and a.attnum = any (c.conkey)) =
		    array[substring(want.def from 'foreign key \((\w+)\)')]))) then
			execute format('alter table public.%I add constraint %I %s not valid',
			    want.tab, want.name, want.def);
			begin
				execute format('alter table public.%I validate constraint %I',
				    want.tab, want.name);
			exception when check_violation or foreign_key_violation then
				raise notice '%: rows already there do not pass %; kept, '
				    'not valid', want.tab, want.name;
			end;
		end if;
	end loop;
end
$$;

create index if not exists device_commands_queued_idx on public.device_commands
	(device_id, requested_at) where status = 'queued';
create index if not exists device_commands_requested_idx on public.device_commands
	(requested_at desc);
create index if not exists device_command_logs_command_idx on public.device_command_logs
	(command_id, created_at);
create index if not exists device_command_logs_created_at_idx on public.device_command_logs
	(created_at desc);

-- device_command_logs gets a row when a command is queued and each time its
-- status changes, whoever changes it (gxp-control, gxp-cmd, the dashboard,
-- an operator's SQL), in the same transaction.  security definer: the row
-- goes in even for a role that may not write the log itself.
create or replace function public.gxp_device_command_log() returns trigger
language plpgsql security definer set search_path = pg_catalog, public as $$
begin
	if tg_op = 'INSERT' then
		insert into public.device_command_logs (command_id, device_id, event_type, event_payload)
		values (new.command_id, new.device_id, new.status, jsonb_build_object(
		    'command_type', new.command_type, 'command_payload', new.command_payload,
		    'expires_at', new.expires_at));
	elsif new.status is distinct from old.status then
		insert into public.device_command_logs (command_id, device_id, event_type, event_payload)
		values (new.command_id, new.device_id, new.status, jsonb_build_object(
		    'from', old.status, 'sent_at', new.sent_at));
	end if;
	return null;
end
$$;
drop trigger if exists gxp_device_command_log on public.device_commands;
create trigger gxp_device_command_log after insert or update of status
	on public.device_commands for each row execute function public.gxp_device_command_log();

-- A stored capture never goes backwards, whoever writes: several workers
-- share one fleet (README, "Running several workers"), and one whose spool
-- still held a capture another worker stored (a handover, a late timeout)
-- must not set the row back to assembling or failed, nor clear its object.
create or replace function public.gxp_captures_keep_stored() returns trigger
language plpgsql set search_path = pg_catalog, public as $$
begin
	if old.ingest_status = 'stored' and new.ingest_status is distinct from 'stored' then
		new.ingest_status := 'stored';
		new.ingest_error := old.ingest_error;
		new.storage_path := old.storage_path;
		new.image_sha256 := old.image_sha256;
		new.image_url := old.image_url;
	end if;
	return new;
end
$$;
drop trigger if exists gxp_captures_keep_stored on public.captures;
create trigger gxp_captures_keep_stored before update on public.captures
	for each row execute function public.gxp_captures_keep_stored();

-- PostgREST learns of new tables and columns when it reloads its schema
-- cache; Supabase does that on its own after DDL, a self-hosted PostgREST
-- may not.  Delivered at commit.
notify pgrst, 'reload schema';

commit;

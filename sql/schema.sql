-- schema.sql: the tables gxp writes (SPEC.md, "The database the user
-- already has"), for a fresh Supabase project.  Safe to run more than once
-- and on a project that already has these tables: nothing is dropped or
-- rewritten; missing tables, columns, the unique keys gxp's upserts rely
-- on, the indexes behind the Monitoring queries and the dashboards' view
-- (captures_with_sensors) are added.
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
begin
	for want in
		select * from (values
			('devices', array['device_hw_id'], 'devices_device_hw_id_key'),
			('captures', array['device_id', 'device_capture_id'],
			    'captures_device_id_device_capture_id_key'),
			('sensor_readings', array['event_id'], 'sensor_readings_event_id_key'),
			('device_status', array['event_id'], 'device_status_event_id_key'),
			('device_errors', array['event_id'], 'device_errors_event_id_key'),
			('device_publish_log', array['event_id'], 'device_publish_log_event_id_key')
		) as t (tab, cols, name)
	loop
		if not exists (
			select 1
			from pg_index i
			join pg_class c on c.oid = i.indrelid
			join pg_namespace n on n.oid = c.relnamespace
			where n.nspname = 'public' and c.relname = want.tab
			and i.indisunique and i.indpred is null
			and (select array_agg(a.attname::text order by a.attname)
			     from pg_attribute a
			     where a.attrelid = c.oid and a.attnum = any (i.indkey))
			    = (select array_agg(x order by x) from unnest(want.cols) x)
			and i.indnatts = cardinality(want.cols)
		) then
			execute format('alter table public.%I add constraint %I unique (%s)',
			    want.tab, want.name,
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

-- PostgREST learns of new tables and columns when it reloads its schema
-- cache; Supabase does that on its own after DDL, a self-hosted PostgREST
-- may not.  Delivered at commit.
notify pgrst, 'reload schema';

commit;

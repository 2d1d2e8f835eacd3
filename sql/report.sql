-- report.sql: two read-only views gxp-report reads on Supabase (see
-- gxp-report(1)).  Safe to run more than once; run it after sql/schema.sql
-- and sql/rls.sql.  Both are security_invoker views, so row level security
-- applies as on the tables: service_role (gxp-report's key) reads every
-- row, authenticated users what sql/rls.sql lets them read, anon nothing.
--
-- Columns another migration may or may not have added (devices.next_wake_at
-- from the control plane, captures.image_url) are read through to_jsonb(),
-- so the views work with and without them and need no change when they
-- come; a column that is not there is not in the JSON either.

begin;

-- The captures as the report reads them: the outcome, not the metadata.
create or replace view public.gxp_report_captures
with (security_invoker = true) as
select c.capture_id, c.device_id, c.device_capture_id, c.captured_at,
       c.image_bytes, c.ingest_status, c.ingest_error, c.storage_path,
       c.image_sha256, c.created_at,
       to_jsonb(c) ->> 'image_url' as image_url
from public.captures c;

-- One row per device: its id, its devices row as JSON (with whatever
-- columns the table has: next_wake_at only where the control plane added
-- it), and, as JSON objects shaped like rows of their tables, its latest
-- status, sensor reading and error, and its latest stored photo.  Each
-- latest_* is one index lookup per device (the indexes of sql/schema.sql),
-- so a page of devices costs a page of lookups.
create or replace view public.gxp_report_devices
with (security_invoker = true) as
select d.device_id, to_jsonb(d) as device,
       (select to_jsonb(s) from (
            select x.id, x.device_id, x.status, x.pending_count, x.created_at
            from public.device_status x
            where x.device_id = d.device_id
            order by x.created_at desc limit 1) s) as latest_status,
       (select to_jsonb(r) from (
            select x.id, x.device_id, x.capture_id, x.temperature_c,
                   x.humidity_pct, x.pressure_hpa, x.gas_kohm, x.created_at
            from public.sensor_readings x
            where x.device_id = d.device_id
            order by x.created_at desc limit 1) r) as latest_reading,
       (select to_jsonb(e) from (
            select x.id, x.device_id, x.capture_id, x.error_code, x.severity,
                   x.message, x.occurred_at
            from public.device_errors x
            where x.device_id = d.device_id
            order by x.occurred_at desc limit 1) e) as latest_error,
       (select to_jsonb(p) from (
            select x.*
            from public.gxp_report_captures x
            where x.device_id = d.device_id and x.ingest_status = 'stored'
              and x.captured_at is not null
            order by x.captured_at desc limit 1) p) as latest_photo
from public.devices d;

-- Granted as sql/rls.sql grants the tables.
revoke all on public.gxp_report_captures, public.gxp_report_devices from anon;
revoke insert, update, delete, truncate on public.gxp_report_captures,
    public.gxp_report_devices from authenticated, service_role;
grant select on public.gxp_report_captures, public.gxp_report_devices
    to authenticated, service_role;

commit;

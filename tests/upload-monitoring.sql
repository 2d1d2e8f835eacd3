-- The seed README's Monitoring queries, copied unchanged (tests/upload-db.bats
-- runs them as they are and checks this copy against the seed when it can).

-- Recent device heartbeats
select device_id, status, pending_count, created_at
from public.device_status
order by created_at desc
limit 20;

-- Captures with storage paths
select device_id, device_capture_id, captured_at,
       image_bytes, total_chunks, ingest_status,
       storage_path, created_at
from public.captures
order by created_at desc
limit 20;

-- Recent sensor readings
select sr.device_id, sr.temperature_c, sr.humidity_pct,
       sr.pressure_hpa, sr.created_at
from public.sensor_readings sr
order by sr.created_at desc
limit 20;

-- Recent errors
select device_id, capture_id, error_code,
       message, details, occurred_at
from public.device_errors
order by occurred_at desc
limit 50;

-- Inbound/outbound messages
select topic, direction,
       payload->>'image_name' as image,
       payload->>'chunk_id' as chunk,
       received_at
from public.device_publish_log
order by received_at desc
limit 50;


-- The README's Monitoring queries for the command queue (run by
-- tests/control-db.bats): kept the same as the README's text.

-- Commands waiting for their device, oldest first
select d.device_hw_id, c.command_type, c.command_payload, c.requested_at, c.expires_at
from public.device_commands c join public.devices d using (device_id)
where c.status = 'queued' order by c.requested_at limit 50;

-- What became of the latest commands, and how long each waited for its device
select d.device_hw_id, c.command_type, c.status, c.requested_at, c.sent_at,
       c.sent_at - c.requested_at as waited
from public.device_commands c join public.devices d using (device_id)
order by c.requested_at desc limit 50;

-- A command's history (queued, sent, expired, cancelled, failed)
select l.created_at, l.event_type, l.event_payload
from public.device_command_logs l
where l.command_id = (select command_id from public.device_commands
                      order by requested_at desc limit 1)
order by l.created_at;

-- What the devices were told on their cmd topic
select topic, payload, received_at from public.device_publish_log
where direction = 'out' and topic like '%/cmd' order by received_at desc limit 50;

-- Devices that did not wake when they should have (an hour late or more)
select device_hw_id, next_wake_at, last_seen_at from public.devices
where next_wake_at < now() - interval '1 hour' order by next_wake_at limit 50;

-- Step start and end times in INTEGER microseconds since the Unix epoch (UTC), so that fast
-- steps show their real duration; every other timestamp stays in milliseconds.
UPDATE steps SET started_at = started_at * 1000, finished_at = finished_at * 1000;

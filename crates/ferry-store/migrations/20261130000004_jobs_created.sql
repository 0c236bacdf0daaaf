-- list_jobs time-range filters (created_from / created_to) and the web console's overview
-- (jobs per minute, failing runbooks over a recent window).
CREATE INDEX jobs_created ON jobs (created_at);

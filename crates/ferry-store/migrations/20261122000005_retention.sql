-- purge_finished_jobs: terminal jobs by completion time.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('finished', 'failed');

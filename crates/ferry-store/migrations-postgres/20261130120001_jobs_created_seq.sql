-- list_jobs with a time range pages newest first by (created_at, seq) (creation times follow
-- seq only roughly: clock steps, several nodes); this index gives such a page directly and
-- serves everything the created_at index did.
CREATE INDEX jobs_created_seq ON jobs (created_at, seq);
DROP INDEX jobs_created;

-- Solution versions (docs/releasing.md): every job records the version of its solution it was
-- started with (`sha256:<hex>` of the solution's files, plus `+git:<commit>` when known), and
-- whether it is a test job (an event that carried the test header, e.g. to a solution served in
-- draft mode). Jobs stored before this migration have no version (NULL) and are not test jobs.
ALTER TABLE jobs ADD COLUMN solution_version TEXT;
ALTER TABLE jobs ADD COLUMN test INTEGER NOT NULL DEFAULT 0;

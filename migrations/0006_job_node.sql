-- 0006_job_node: the node that runs a job, or last ran it. Several hlptd nodes may share one store
-- (docs/design.md, "Many nodes"); a node claims a queued job by setting its status and this column
-- in one statement, and at start-up puts back to the queue only the running jobs that name it.
-- NULL: claimed before this version, by the only node there was.

ALTER TABLE jobs ADD COLUMN node TEXT;
CREATE INDEX jobs_by_node ON jobs (node, status);

-- 0002_indexes: the per-job lookups the API and the queue make on every request (events, metrics
-- and checkpoints of one job in order; the next queued job). Without them each is a full scan.

CREATE INDEX job_events_by_job ON job_events (job_id, seq);
CREATE INDEX checkpoints_by_job ON checkpoints (job_id, step);
CREATE INDEX jobs_by_queue ON jobs (status, queue_order);
CREATE INDEX adapters_by_job ON adapters (job_id);

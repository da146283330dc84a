-- 0008_leases: a node holds each job it runs under a lease (docs/design.md, "Many nodes"). A claim
-- adds one to lease_epoch, the fencing token every write that follows from the claim carries, and
-- sets lease_until; the node's heartbeat renews it. lease_until is in milliseconds on the
-- database's clock, never a node's; NULL when no node holds the job. A running job whose lease has
-- expired is claimed by another node, which resumes it from its last checkpoint.
--
-- nodes: each node's row, written by its heartbeat, for GET /v1/nodes and the metrics.
--
-- Notifications on channel hlpt_jobs, sent at commit to every node that listens: "e <job id>" for
-- a new event of a job (event streams on any node follow it), "s <job id> <status>" for a job
-- inserted, a status changed or a lease given up (the node running it acts on a pause or a cancel
-- asked elsewhere; idle nodes claim a job queued or released).

ALTER TABLE jobs ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN lease_until BIGINT;
-- The heartbeat renews the leases of one node: only held jobs are in this index, so it does not
-- grow with the jobs a node ever ran. (A step's report leaves lease_until alone, so that its update
-- touches no indexed column.)
CREATE INDEX jobs_leased ON jobs (node) WHERE lease_until IS NOT NULL;

CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,                 -- --node-id
    url           TEXT NOT NULL,                    -- where it answers (--advertise-url)
    pid           BIGINT NOT NULL,
    workers       BIGINT NOT NULL,                  -- --workers
    running       BIGINT NOT NULL,                  -- workers running at its last heartbeat
    state         TEXT NOT NULL,                    -- up | draining | stopped
    lease_ms      BIGINT NOT NULL,                  -- its --lease-seconds, in ms
    started_at    BIGINT NOT NULL,                  -- Unix seconds
    heartbeat_at  BIGINT NOT NULL                   -- ms, the database's clock
);

CREATE FUNCTION hlpt_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hlpt_jobs', 'e ' || NEW.job_id);
    RETURN NULL;
END
$$;

CREATE FUNCTION hlpt_notify_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hlpt_jobs', 's ' || NEW.id || ' ' || NEW.status);
    RETURN NULL;
END
$$;

CREATE TRIGGER job_events_notify AFTER INSERT ON job_events FOR EACH ROW EXECUTE FUNCTION hlpt_notify_event();
CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION hlpt_notify_job();
CREATE TRIGGER jobs_notify_update AFTER UPDATE ON jobs FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR (OLD.lease_until IS NOT NULL AND NEW.lease_until IS NULL))
    EXECUTE FUNCTION hlpt_notify_job();

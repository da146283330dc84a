-- 0008_leases: a node holds each job it runs under a lease (docs/design.md, "Many nodes"). A claim
-- adds one to lease_epoch, the fencing token every write that follows from the claim carries, and
-- sets lease_until; the node's heartbeat renews it. lease_until is in milliseconds on the
-- database's clock, never a node's; NULL when no node holds the job. A running job whose lease has
-- expired is claimed by another node, which resumes it from its last checkpoint.
--
-- nodes: each node's row, written by its heartbeat, for GET /v1/nodes and the metrics.

ALTER TABLE jobs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
-- The heartbeat renews the leases of one node: only held jobs are in this index, so it does not
-- grow with the jobs a node ever ran. (A step's report leaves lease_until alone, so that its update
-- touches no indexed column.)
CREATE INDEX jobs_leased ON jobs (node) WHERE lease_until IS NOT NULL;

CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,                 -- --node-id
    url           TEXT NOT NULL,                    -- where it answers (--advertise-url)
    pid           INTEGER NOT NULL,
    workers       INTEGER NOT NULL,                 -- --workers
    running       INTEGER NOT NULL,                 -- workers running at its last heartbeat
    state         TEXT NOT NULL,                    -- up | draining | stopped
    lease_ms      INTEGER NOT NULL,                 -- its --lease-seconds, in ms
    started_at    INTEGER NOT NULL,                 -- Unix seconds
    heartbeat_at  INTEGER NOT NULL                  -- ms, the database's clock
);

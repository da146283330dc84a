-- 0005_no_blobs: no table holds artefact bytes. Before this SQL runs, in the same transaction, hlptd
-- writes the bytes of files.content, checkpoints.state and adapters.weights out as blobs and names
-- them in the sha256 columns of 0004 (server/store_sqlite.c); here the three tables are rebuilt
-- without their BLOB columns, and without files.path, which nothing used. A blob may be named by
-- several rows (the same bytes twice); it is removed when the last of them goes.

CREATE TABLE files_new (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,               -- file-…
    filename    TEXT NOT NULL,
    purpose     TEXT NOT NULL,                      -- fine-tune | fine-tune-results
    bytes       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    status      TEXT NOT NULL,                      -- uploaded | processed | error
    sha256      TEXT,                               -- the content's blob; NULL once deleted
    lines       INTEGER NOT NULL DEFAULT 0,
    stats       TEXT,                               -- dataset statistics, JSON
    error       TEXT,
    deleted_at  INTEGER,                            -- NULL = live
    CHECK (sha256 IS NOT NULL OR deleted_at IS NOT NULL)
);
INSERT INTO files_new (seq, id, filename, purpose, bytes, created_at, status, sha256, lines, stats, error, deleted_at)
    SELECT seq, id, filename, purpose, bytes, created_at, status, sha256, lines, stats, error, deleted_at FROM files;
DROP TABLE files;
ALTER TABLE files_new RENAME TO files;

CREATE TABLE checkpoints_new (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,               -- ftckpt-…
    job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    metrics     TEXT,                               -- JSON
    sha256      TEXT NOT NULL,                      -- the state's blob: adapter, optimizer, data order, RNG
    bytes       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
INSERT INTO checkpoints_new (seq, id, job_id, step, metrics, sha256, bytes, created_at)
    SELECT seq, id, job_id, step, metrics, sha256, bytes, created_at FROM checkpoints;
DROP TABLE checkpoints;
ALTER TABLE checkpoints_new RENAME TO checkpoints;

CREATE TABLE adapters_new (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,            -- ad-…
    name           TEXT NOT NULL UNIQUE,
    config         TEXT NOT NULL,                   -- adapter_config.json
    sha256         TEXT NOT NULL,                   -- the blob of adapter_model.safetensors
    bytes          INTEGER NOT NULL,
    base_hash      TEXT,
    job_id         TEXT REFERENCES jobs(id) ON DELETE SET NULL,
    checkpoint_id  TEXT REFERENCES checkpoints(id) ON DELETE SET NULL,
    created_at     INTEGER NOT NULL
);
INSERT INTO adapters_new (seq, id, name, config, sha256, bytes, base_hash, job_id, checkpoint_id, created_at)
    SELECT seq, id, name, config, sha256, bytes, base_hash, job_id, checkpoint_id, created_at FROM adapters;
DROP TABLE adapters;
ALTER TABLE adapters_new RENAME TO adapters;

-- The indexes of 0002 went with their tables.
CREATE INDEX checkpoints_by_job ON checkpoints (job_id, step);
CREATE INDEX adapters_by_job ON adapters (job_id);
-- Whether any row still names a blob: asked at every delete and at start-up.
CREATE INDEX files_by_sha256 ON files (sha256);
CREATE INDEX checkpoints_by_sha256 ON checkpoints (sha256);
CREATE INDEX adapters_by_sha256 ON adapters (sha256);

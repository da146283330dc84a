-- 0001_init: the tables of hlptd (docs/design.md, "Files"). Times are Unix seconds; JSON columns hold
-- compact JSON text; every public id is a prefix plus 24 base62 characters. `seq` is the insertion
-- order that lists page over with ?after=.

CREATE TABLE files (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,               -- file-…
    filename    TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    status      TEXT NOT NULL,                      -- uploaded | processed | error
    content     BLOB,                               -- the file itself, or NULL when `path` is set
    path        TEXT,                               -- relative to the data directory
    lines       INTEGER NOT NULL DEFAULT 0,
    stats       TEXT,                               -- dataset statistics, JSON
    error       TEXT,
    CHECK (content IS NOT NULL OR path IS NOT NULL)
);

CREATE TABLE jobs (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,         -- ftjob-…
    status            TEXT NOT NULL,                -- validating_files | queued | running | paused
                                                    -- | succeeded | failed | cancelled
    model             TEXT NOT NULL,
    training_file     TEXT NOT NULL REFERENCES files(id),
    validation_file   TEXT REFERENCES files(id),
    method            TEXT NOT NULL,                -- JSON
    hyperparameters   TEXT NOT NULL,                -- JSON
    seed              INTEGER NOT NULL,
    suffix            TEXT,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    error             TEXT,                         -- JSON {"code","message","param"}
    fine_tuned_model  TEXT,
    step              INTEGER NOT NULL DEFAULT 0,
    total_steps       INTEGER NOT NULL DEFAULT 0,
    epoch             REAL NOT NULL DEFAULT 0,
    tokens_per_s      REAL NOT NULL DEFAULT 0,
    queue_order       INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE job_events (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,               -- ftevent-…
    job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    level       TEXT NOT NULL,                      -- info | warn | error
    message     TEXT NOT NULL,
    data        TEXT                                -- JSON
);

CREATE TABLE metrics (
    job_id        TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step          INTEGER NOT NULL,
    train_loss    REAL,
    valid_loss    REAL,
    valid_acc     REAL,
    lr            REAL,
    tokens_per_s  REAL,
    created_at    INTEGER NOT NULL,
    UNIQUE (job_id, step)
);

CREATE TABLE checkpoints (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,               -- ftckpt-…
    job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    metrics     TEXT,                               -- JSON
    state       BLOB NOT NULL,                      -- adapter, optimizer, data order, RNG
    created_at  INTEGER NOT NULL
);

CREATE TABLE adapters (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,            -- ad-…
    name           TEXT NOT NULL UNIQUE,
    config         TEXT NOT NULL,                   -- adapter_config.json
    weights        BLOB NOT NULL,                   -- adapter_model.safetensors
    base_hash      TEXT,
    job_id         TEXT REFERENCES jobs(id) ON DELETE SET NULL,
    checkpoint_id  TEXT REFERENCES checkpoints(id) ON DELETE SET NULL,
    created_at     INTEGER NOT NULL,
    bytes          INTEGER NOT NULL
);

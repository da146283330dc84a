-- 0007_shared_blobs: on PostgreSQL, where several nodes share one store, every blob a row names is
-- also kept in the database, in chunks of at most 1 MiB, base64 text (docs/design.md, "Many
-- nodes"); each node's <data-dir>/blobs is then a cache. An SQLite store serves one node, whose
-- blobs are its files: these tables stay empty there.

CREATE TABLE blobs (
    sha256      TEXT PRIMARY KEY,                   -- the blob's name
    bytes       BIGINT NOT NULL,
    chunks      BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE blob_chunks (
    sha256      TEXT NOT NULL REFERENCES blobs(sha256) ON DELETE CASCADE,
    n           BIGINT NOT NULL,                    -- 0, 1, …
    data        TEXT NOT NULL,                      -- base64 of up to 1 MiB
    PRIMARY KEY (sha256, n)
);

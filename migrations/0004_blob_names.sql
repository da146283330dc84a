-- 0004_blob_names: artefacts become blobs, files named by their SHA-256 under <data-dir>/blobs
-- (docs/design.md, "The store"). Each table that held bytes gets the column that names its blob
-- (and checkpoints their size); 0005 fills them, moving the bytes out, and drops the BLOB columns.

ALTER TABLE files ADD COLUMN sha256 TEXT;          -- the content's blob; NULL once deleted
ALTER TABLE checkpoints ADD COLUMN sha256 TEXT;    -- the state's blob
ALTER TABLE checkpoints ADD COLUMN bytes INTEGER;  -- its size
ALTER TABLE adapters ADD COLUMN sha256 TEXT;       -- the blob of adapter_model.safetensors

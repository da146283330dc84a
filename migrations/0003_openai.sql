-- 0003_openai: what OpenAI's job and file objects carry beyond 0001 (docs/rest.md). A job keeps its
-- metadata and integrations as given (JSON), the tokens it trained on and the id of its results
-- file. A file that finished jobs still name is not removed when it is deleted: its bytes go and
-- `deleted_at` marks the row, so the jobs keep their figures and their foreign keys hold.

ALTER TABLE jobs ADD COLUMN metadata TEXT;            -- JSON object of strings, or NULL
ALTER TABLE jobs ADD COLUMN integrations TEXT;        -- JSON array, or NULL
ALTER TABLE jobs ADD COLUMN trained_tokens INTEGER;   -- NULL until the job has succeeded
ALTER TABLE jobs ADD COLUMN result_file TEXT;         -- file-… of the results CSV, or NULL
ALTER TABLE files ADD COLUMN deleted_at INTEGER;      -- NULL = live

-- Deleting a file asks which jobs name it.
CREATE INDEX jobs_by_training_file ON jobs (training_file);
CREATE INDEX jobs_by_validation_file ON jobs (validation_file);

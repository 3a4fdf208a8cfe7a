-- 0003: pruning a task deletes its uploaded file only when no other task still reads it; this index answers
-- "does any task still read this file?".
-- Runs with search_path set to the store's schema, in one transaction, under the migration lock.

CREATE INDEX tasks_file_ref ON tasks (file_ref) WHERE file_ref IS NOT NULL;

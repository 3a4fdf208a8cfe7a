-- 0003: pruning a task deletes its uploaded file only when no other task still reads it; this index answers
-- "does any task still read this file?".

CREATE INDEX tasks_file_ref ON tasks (file_ref) WHERE file_ref IS NOT NULL;

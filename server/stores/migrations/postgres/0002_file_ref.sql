-- 0002: the uploaded file a task reads (`task.file.ref`), so that pruning the task deletes the file too.
-- Runs with search_path set to the store's schema, in one transaction, under the migration lock.

ALTER TABLE tasks ADD COLUMN file_ref text;

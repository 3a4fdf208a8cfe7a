-- 0002: the uploaded file a task reads (`task.file.ref`), so that pruning the task deletes the file too.

ALTER TABLE tasks ADD COLUMN file_ref TEXT;

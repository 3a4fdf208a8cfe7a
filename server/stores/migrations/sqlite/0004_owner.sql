-- 0004: the principal that owns each task (a token's name, or the hello name without tokens). Status, list,
-- watch, cancel and download only show a principal its own tasks, and idempotency keys are scoped to it.
-- Tasks recorded before are owned by their client name, which is what a principal was then; a record made
-- from a result alone has no owner ('') and only an admin sees it.

ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT '';
UPDATE tasks SET owner = client_name WHERE timeout_ms IS NOT NULL;

DROP INDEX tasks_idempotency;
CREATE UNIQUE INDEX tasks_idempotency ON tasks (owner, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- list of one principal's tasks, newest first.
CREATE INDEX tasks_owner_submitted ON tasks (owner, submitted_at);

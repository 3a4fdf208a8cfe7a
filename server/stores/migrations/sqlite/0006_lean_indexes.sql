-- 0006: fewer index writes per task. Every index is written on each INSERT, and those on status on each
-- status change; the store writes each task three times (submit, start, result).
-- * Retention reads only final tasks: its index holds them alone, so a task enters it once, with its result.
--   The prune query repeats this WHERE term word for word, which is what lets SQLite use a partial index.
-- * The lists filtered by type or by client name scan tasks_submitted newest first instead (there are few
--   task types, and a client is usually its owner, whose lists keep tasks_owner_submitted).
-- tests/integration/query_plans_test.ts checks that list, prune and the lookups still use an index.

DROP INDEX tasks_status_finished;
CREATE INDEX tasks_finished ON tasks (finished_at)
  WHERE status IN ('succeeded', 'failed', 'cancelled');

DROP INDEX tasks_type_submitted;
DROP INDEX tasks_client_submitted;

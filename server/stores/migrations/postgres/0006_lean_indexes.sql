-- 0006: fewer index writes per task. Every index is written on each INSERT, and on each UPDATE that changes
-- an indexed column (status changes twice per task, so no update of a task is a HOT update).
-- * Retention reads only final tasks: its index holds them alone, so a task enters it once, with its result.
-- * The lists filtered by type or by client name scan tasks_submitted newest first instead (there are few
--   task types, and a client is usually its owner, whose lists keep tasks_owner_submitted).
-- tests/integration/query_plans_test.ts checks that list, prune and the lookups still use an index.
-- Runs with search_path set to the store's schema, in one transaction, under the migration lock.

DROP INDEX tasks_status_finished;
CREATE INDEX tasks_finished ON tasks (finished_at)
  WHERE status IN ('succeeded', 'failed', 'cancelled');

DROP INDEX tasks_type_submitted;
DROP INDEX tasks_client_submitted;

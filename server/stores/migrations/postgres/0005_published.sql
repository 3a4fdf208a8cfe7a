-- 0005: when the broker confirmed the publish of a task that has an idempotency key. A repeat of the key
-- publishes the task again only when this stays NULL past the first submit's publish deadline (its server
-- died before the confirm, or the confirm was lost), so that a task being published right now by another
-- server, or queued for long, is not queued twice. Tasks recorded before count as published.
-- Runs with search_path set to the store's schema, in one transaction, under the migration lock.

ALTER TABLE tasks ADD COLUMN published_at timestamptz;
UPDATE tasks SET published_at = submitted_at;

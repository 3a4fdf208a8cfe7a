-- 0001: the task records, one row per task from submit to final state.
-- Runs with search_path set to the store's schema, in one transaction, under the migration lock.

CREATE TABLE tasks (
  -- "C" collation: list pages are ordered by (submitted_at, task_id) byte-wise, whatever the database locale.
  task_id         text COLLATE "C" PRIMARY KEY,
  task_type       text             NOT NULL,
  status          text             NOT NULL
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  priority        integer          NOT NULL,
  client_name     text             NOT NULL,
  client_kind     text             NOT NULL CHECK (client_kind IN ('web', 'mobile', 'cli')),
  -- The id of the server that accepted the task.
  origin          text             NOT NULL,
  -- json, not jsonb: the values are only stored and returned, and json keeps "\u0000", which jsonb rejects.
  payload         json,
  payload_ref     text,
  output          json,
  -- The blob key of an output stored as an object instead of inline.
  output_ref      text,
  error_code      text,
  error_message   text,
  attempts        integer          NOT NULL DEFAULT 0,
  max_attempts    integer          NOT NULL,
  timeout_ms      integer,
  worker          text,
  duration_ms     double precision,
  submitted_at    timestamptz      NOT NULL,
  started_at      timestamptz,
  finished_at     timestamptz,
  idempotency_key text
);

CREATE UNIQUE INDEX tasks_idempotency ON tasks (client_name, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- list: newest first, optionally filtered by status, type or client.
CREATE INDEX tasks_submitted ON tasks (submitted_at, task_id);
CREATE INDEX tasks_status_submitted ON tasks (status, submitted_at);
CREATE INDEX tasks_type_submitted ON tasks (task_type, submitted_at);
CREATE INDEX tasks_client_submitted ON tasks (client_name, submitted_at);

-- prune: final tasks that finished before a time.
CREATE INDEX tasks_status_finished ON tasks (status, finished_at);

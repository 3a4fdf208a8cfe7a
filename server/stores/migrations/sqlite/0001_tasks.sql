-- 0001: the task records, one row per task from submit to final state.
-- Applied in one BEGIN IMMEDIATE transaction with every other pending migration. Times are milliseconds
-- since the epoch, JSON values are text. Same as the first migration in code before the numbered files.

CREATE TABLE tasks (
  task_id         TEXT    NOT NULL PRIMARY KEY,
  task_type       TEXT    NOT NULL,
  status          TEXT    NOT NULL
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  priority        INTEGER NOT NULL,
  client_name     TEXT    NOT NULL,
  client_kind     TEXT    NOT NULL CHECK (client_kind IN ('web', 'mobile', 'cli')),
  -- The id of the server that accepted the task.
  origin          TEXT    NOT NULL,
  payload         TEXT,
  payload_ref     TEXT,
  output          TEXT,
  -- The blob key of an output stored as an object instead of inline.
  output_ref      TEXT,
  error_code      TEXT,
  error_message   TEXT,
  attempts        INTEGER NOT NULL DEFAULT 0,
  max_attempts    INTEGER NOT NULL,
  timeout_ms      INTEGER,
  worker          TEXT,
  duration_ms     REAL,
  submitted_at    INTEGER NOT NULL,
  started_at      INTEGER,
  finished_at     INTEGER,
  idempotency_key TEXT
) STRICT;

CREATE UNIQUE INDEX tasks_idempotency ON tasks (client_name, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- list: newest first, optionally filtered by status, type or client.
CREATE INDEX tasks_submitted ON tasks (submitted_at, task_id);
CREATE INDEX tasks_status_submitted ON tasks (status, submitted_at);
CREATE INDEX tasks_type_submitted ON tasks (task_type, submitted_at);
CREATE INDEX tasks_client_submitted ON tasks (client_name, submitted_at);

-- prune: final tasks that finished before a time.
CREATE INDEX tasks_status_finished ON tasks (status, finished_at);

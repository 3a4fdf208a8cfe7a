/**
 * The columns of the `tasks` table, each defined once: its name, the {@linkcode TaskRecord} field it holds,
 * its SQLite and PostgreSQL types, and how a field's value is written to each and read back. The column lists
 * of INSERT and SELECT, the parameters of a record and the record of a row are all generated from
 * {@linkcode TASK_COLUMNS}, for both SQL stores, so that no two lists have to agree by position.
 *
 * The table describes the schema; it does not create it. The numbered migrations do, and a test checks that
 * the migrated schema of each flavour has exactly these columns, types and nullability.
 *
 * @module
 */
import type { ClientKind, TaskStatus } from "../../shared/protocol.ts";
import { asClientKind, asTaskStatus, type TaskRecord, toIso } from "./records.ts";

/** A SQL flavour that keeps task records. */
export type Flavour = "sqlite" | "postgres";

/** A parameter as both drivers take it. */
export type Cell = string | number | null;

/** How one flavour keeps a kind of value. */
interface Storage<T> {
  /** The column type, as the migrations declare it. */
  readonly type: string;
  /** The parameter for a value. */
  write(value: T): string | number;
  /** The value from what the driver returns for a non-NULL cell; `TypeError` when it is not one. */
  read(raw: unknown, column: string): T;
  /** The SELECT expression of the column, when it is not its bare name. */
  select?(name: string): string;
  /**
   * How the record's field travels inside a JSON document (PostgreSQL's `json_to_recordset`), when not as
   * the column's own type: the type it is read as there, and the expression that makes the column's value.
   */
  recordset?: { readonly type: string; value(ref: string): string };
}

/** A kind of value, and how each flavour keeps it. */
type ValueType<T> = Readonly<Record<Flavour, Storage<T>>>;

function same<T>(value: T): T {
  return value;
}

function readText(raw: unknown, column: string): string {
  if (typeof raw !== "string") throw new TypeError(`Cannot read column "${column}" as text`);
  return raw;
}

function readNumber(raw: unknown, column: string): number {
  if (typeof raw !== "number") throw new TypeError(`Cannot read column "${column}" as a number`);
  return raw;
}

function readDate(raw: unknown, column: string): number {
  if (!(raw instanceof Date)) throw new TypeError(`Cannot read column "${column}" as a time`);
  return raw.getTime();
}

/** Text kept as text in both flavours, read back through `parse`. */
function textOf<T extends string>(parse: (text: string) => T): ValueType<T> {
  const read = (raw: unknown, column: string) => parse(readText(raw, column));
  return {
    sqlite: { type: "TEXT", write: same, read },
    postgres: { type: "text", write: same, read },
  };
}

const TEXT: ValueType<string> = textOf(same);
const STATUS: ValueType<TaskStatus> = textOf(asTaskStatus);
const CLIENT_KIND: ValueType<ClientKind> = textOf(asClientKind);

const INTEGER: ValueType<number> = {
  sqlite: { type: "INTEGER", write: same, read: readNumber },
  postgres: { type: "integer", write: same, read: readNumber },
};

const REAL: ValueType<number> = {
  sqlite: { type: "REAL", write: same, read: readNumber },
  postgres: { type: "double precision", write: same, read: readNumber },
};

/**
 * JSON text. PostgreSQL keeps it as `json` (not `jsonb`, which rejects "\u0000") and returns it as text, so
 * that a JSON `null` stays apart from no value.
 */
const JSON_TEXT: ValueType<string> = {
  sqlite: { type: "TEXT", write: same, read: readText },
  postgres: {
    type: "json",
    write: same,
    read: readText,
    select: (name) => `${name}::text AS ${name}`,
    // JSON text as a JSON string: a JSON null stays apart from no value (an absent key).
    recordset: { type: "text", value: (ref) => `${ref}::json` },
  },
};

/** Milliseconds since the epoch: an INTEGER in SQLite, a `timestamptz` in PostgreSQL. */
const TIME: ValueType<number> = {
  sqlite: { type: "INTEGER", write: same, read: readNumber },
  postgres: {
    type: "timestamptz",
    write: toIso,
    read: readDate,
    // Whole milliseconds as a double: exact to the microsecond that `to_timestamp` rounds to.
    recordset: { type: "double precision", value: (ref) => `to_timestamp(${ref} / 1000)` },
  },
};

/** One column of `tasks`. */
export interface Column<K extends keyof TaskRecord = keyof TaskRecord> {
  /** The SQL name. */
  readonly name: string;
  /** The record field it holds. */
  readonly field: K;
  /** Whether it may be NULL: exactly when the field may be `null`. */
  readonly nullable: boolean;
  /** Whether reads return it; otherwise it reads as NULL (the payload: never shown, maybe large). */
  readonly readBack: boolean;
  /** Its type in each flavour, as the migrations declare it. */
  readonly types: Readonly<Record<Flavour, string>>;
  /** The parameter for this column of `record`. */
  cell(record: TaskRecord, flavour: Flavour): Cell;
  /** The field's value from what the driver returned for this column. */
  value(raw: unknown, flavour: Flavour): TaskRecord[K];
  /** The expression that reads it in a SELECT list; `all` reads it even when it is not read back. */
  select(flavour: Flavour, all?: boolean): string;
  /**
   * In PostgreSQL's `json_to_recordset(…) AS r(…)`: the type the field is read as there, and the column's
   * value from a reference to it.
   */
  readonly recordset: { readonly type: string; value(ref: string): string };
}

/** How {@linkcode column} defines one column. */
interface ColumnSpec<K extends keyof TaskRecord> {
  readonly name: string;
  readonly type: ValueType<NonNullable<TaskRecord[K]>>;
  /** Must say whether the field may be `null`, so the table cannot disagree with {@linkcode TaskRecord}. */
  readonly nullable: null extends TaskRecord[K] ? true : false;
  /** @defaultValue `true` */
  readonly readBack?: false;
}

function column<K extends keyof TaskRecord>(field: K, spec: ColumnSpec<K>): Column<K> {
  const { name, type, nullable } = spec;
  const readBack = spec.readBack ?? true;
  return {
    name,
    field,
    nullable,
    readBack,
    types: { sqlite: type.sqlite.type, postgres: type.postgres.type },
    cell(record, flavour) {
      const value = record[field];
      return value === null ? null : type[flavour].write(value as NonNullable<TaskRecord[K]>);
    },
    value(raw, flavour) {
      if (raw === null || raw === undefined) {
        if (nullable) return null as TaskRecord[K];
        throw new TypeError(`Cannot read column "${name}": it is NULL`);
      }
      return type[flavour].read(raw, name);
    },
    select(flavour, all = false) {
      if (!readBack && !all) return `NULL AS ${name}`;
      return type[flavour].select?.(name) ?? name;
    },
    recordset: {
      type: type.postgres.recordset?.type ?? type.postgres.type,
      value: (ref) => type.postgres.recordset?.value(ref) ?? ref,
    },
  };
}

/** Every column of `tasks`, in the order of the INSERT lists. */
export const TASK_COLUMNS = [
  column("taskId", { name: "task_id", type: TEXT, nullable: false }),
  column("taskType", { name: "task_type", type: TEXT, nullable: false }),
  column("status", { name: "status", type: STATUS, nullable: false }),
  column("priority", { name: "priority", type: INTEGER, nullable: false }),
  column("clientName", { name: "client_name", type: TEXT, nullable: false }),
  column("clientKind", { name: "client_kind", type: CLIENT_KIND, nullable: false }),
  column("origin", { name: "origin", type: TEXT, nullable: false }),
  column("payload", { name: "payload", type: JSON_TEXT, nullable: true, readBack: false }),
  column("payloadRef", { name: "payload_ref", type: TEXT, nullable: true }),
  column("output", { name: "output", type: JSON_TEXT, nullable: true }),
  column("outputRef", { name: "output_ref", type: TEXT, nullable: true }),
  column("errorCode", { name: "error_code", type: TEXT, nullable: true }),
  column("errorMessage", { name: "error_message", type: TEXT, nullable: true }),
  column("attempts", { name: "attempts", type: INTEGER, nullable: false }),
  column("maxAttempts", { name: "max_attempts", type: INTEGER, nullable: false }),
  column("timeoutMs", { name: "timeout_ms", type: INTEGER, nullable: true }),
  column("worker", { name: "worker", type: TEXT, nullable: true }),
  column("durationMs", { name: "duration_ms", type: REAL, nullable: true }),
  column("submittedAt", { name: "submitted_at", type: TIME, nullable: false }),
  column("startedAt", { name: "started_at", type: TIME, nullable: true }),
  column("finishedAt", { name: "finished_at", type: TIME, nullable: true }),
  column("idempotencyKey", { name: "idempotency_key", type: TEXT, nullable: true }),
  column("fileRef", { name: "file_ref", type: TEXT, nullable: true }),
  column("owner", { name: "owner", type: TEXT, nullable: false }),
  column("publishedAt", { name: "published_at", type: TIME, nullable: true }),
] as const;

type MissingField = Exclude<keyof TaskRecord, (typeof TASK_COLUMNS)[number]["field"]>;
/** Fails to compile when a field of {@linkcode TaskRecord} has no column. */
const _everyFieldHasAColumn: [MissingField] extends [never] ? true : MissingField = true;

/** The column names, in table order, for an INSERT list: `task_id, task_type, …`. */
export const COLUMN_NAMES: string = TASK_COLUMNS.map((each) => each.name).join(", ");

/**
 * The SELECT list of a flavour: every column in table order, the payload as NULL unless `all` (reading a
 * task back as it was submitted).
 */
export function selectList(flavour: Flavour, all = false): string {
  return TASK_COLUMNS.map((each) => each.select(flavour, all)).join(", ");
}

/** The parameters of a record, one per column in table order. */
export function recordCells(record: TaskRecord, flavour: Flavour): Cell[] {
  return TASK_COLUMNS.map((each) => each.cell(record, flavour));
}

/**
 * The key of each field in the JSON of {@linkcode recordsJson}: its column's place in the table, in base 36
 * (`0` for the first). PostgreSQL reads the keys of each object into a hash table, and one-character keys
 * cost it less than the field names (docs/benchmarks.md, "el almacén PostgreSQL, claves de un carácter").
 */
export const JSON_KEYS: ReadonlyMap<string, string> = new Map(
  TASK_COLUMNS.map((each, i) => [each.field, i.toString(36)]),
);

/**
 * `SELECT … FROM json_to_recordset(<param>) AS r(…)`: the rows, column by column in table order, of the
 * records in the JSON array `param` holds, written by {@linkcode recordsJson}.
 */
export function selectRecordset(param: string): string {
  const key = (field: string) => `"${JSON_KEYS.get(field)}"`;
  const values = TASK_COLUMNS.map((each) =>
    `${each.recordset.value(`r.${key(each.field)}`)} AS ${each.name}`
  );
  const definitions = TASK_COLUMNS.map((each) => `${key(each.field)} ${each.recordset.type}`);
  return `SELECT ${values.join(", ")} FROM json_to_recordset(${param}) AS r(${
    definitions.join(", ")
  })`;
}

/**
 * Records as one JSON array for {@linkcode selectRecordset}: each record as it is (times in milliseconds, JSON
 * values as their text), keyed by {@linkcode JSON_KEYS}, without its `null` fields (an absent key reads as
 * NULL, and costs PostgreSQL less to read than a `null`). PostgreSQL refuses the escape of a lone UTF-16
 * surrogate, which `JSON.stringify` writes, so strings that hold one are first made well formed (U+FFFD, as
 * the UTF-8 encoding of a text parameter does).
 */
export function recordsJson(records: readonly TaskRecord[]): string {
  const text = JSON.stringify(records.map((record) => _withoutNulls(record, false)));
  // Rare: only a lone surrogate, or a backslash before "ud" in some text, gets here.
  if (!text.includes("\\ud")) return text;
  return JSON.stringify(records.map((record) => _withoutNulls(record, true)));
}

function _withoutNulls(record: TaskRecord, wellFormed: boolean): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  // for…in: a record is a plain object of its own fields, and this loop allocates nothing per field.
  for (const key in record) {
    const value = record[key as keyof TaskRecord];
    if (value === null) continue;
    fields[JSON_KEYS.get(key)!] = wellFormed && typeof value === "string"
      ? value.toWellFormed()
      : value;
  }
  return fields;
}

/** The record of a row read with {@linkcode selectList}; `TypeError` when a value is not what it should be. */
export function recordFromRow(
  row: Readonly<Record<string, unknown>>,
  flavour: Flavour,
): TaskRecord {
  const record: Partial<Record<keyof TaskRecord, unknown>> = {};
  for (const each of TASK_COLUMNS) record[each.field] = each.value(row[each.name], flavour);
  // Complete: TASK_COLUMNS has a column for every field (checked at compile time above), each read by type.
  return record as TaskRecord;
}

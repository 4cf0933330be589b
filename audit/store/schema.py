"""The store's schema: versioned migrations recorded in `meta.schema_version`.

An older store is upgraded in place, in one transaction; a newer one is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from audit.errors import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "migrate", "schema_version"]

_V1_SCHEMA = """
CREATE TABLE meta (
    "key" TEXT PRIMARY KEY,
    "value" TEXT
);
CREATE TABLE runs (
    "id" TEXT PRIMARY KEY,
    "started_at" TEXT,
    "ended_at" TEXT,
    "window_start" TEXT,
    "window_end" TEXT,
    "trigger" TEXT,
    "outcome" TEXT NOT NULL DEFAULT 'running'
        CHECK ("outcome" IN ('running', 'ok', 'failed', 'interrupted')),
    "error" TEXT,
    "org_id" TEXT,
    "is_sandbox" INTEGER,
    "records" INTEGER,
    "elf_files_downloaded" INTEGER,
    "elf_files_skipped" INTEGER,
    "actions" INTEGER,
    "findings_open" INTEGER,
    "alerts_sent" INTEGER,
    "api_calls" INTEGER,
    "summary" TEXT
);
CREATE TABLE awi_records (
    "id" TEXT PRIMARY KEY,
    "session_id" TEXT,
    "agent_id" TEXT,
    "agent_name" TEXT,
    "action_name" TEXT,
    "action_type" TEXT,
    "channel" TEXT,
    "status" TEXT,
    "error_code" TEXT,
    "prompt_tokens" INTEGER,
    "completion_tokens" INTEGER,
    "tokens" INTEGER,
    "reported_awu" REAL,
    "action_input" TEXT,
    "user_id" TEXT,
    "case_id" TEXT,
    "started_at" TEXT,
    "created_date" TEXT,
    "system_modstamp" TEXT
);
CREATE INDEX idx_awi_records_started_at ON awi_records ("started_at");
CREATE TABLE elf_events (
    "request_id" TEXT PRIMARY KEY,
    "work_item_id" TEXT,
    "session_id" TEXT,
    "user_id" TEXT,
    "agent_id" TEXT,
    "action_name" TEXT,
    "action_type" TEXT,
    "channel" TEXT,
    "status" TEXT,
    "prompt_tokens" INTEGER,
    "completion_tokens" INTEGER,
    "tokens" INTEGER,
    "reported_awu" REAL,
    "started_at" TEXT,
    "file_id" TEXT,
    "file_created_date" TEXT,
    "file_sequence" INTEGER
);
CREATE INDEX idx_elf_events_started_at ON elf_events ("started_at");
CREATE INDEX idx_elf_events_work_item_id ON elf_events ("work_item_id");
CREATE TABLE elf_files (
    "id" TEXT PRIMARY KEY,
    "log_date" TEXT,
    "interval" TEXT,
    "sequence" INTEGER,
    "created_date" TEXT,
    "rows" INTEGER,
    "sha256" TEXT,
    "bytes" INTEGER,
    "bad" INTEGER NOT NULL DEFAULT 0,
    "error" TEXT,
    "processed_at" TEXT,
    "run_id" TEXT
);
CREATE TABLE cases (
    "id" TEXT PRIMARY KEY,
    "status" TEXT,
    "is_closed" INTEGER,
    "closed_at" TEXT
);
CREATE TABLE actions (
    "id" TEXT PRIMARY KEY,
    "session_id" TEXT,
    "agent_id" TEXT,
    "agent_name" TEXT,
    "action_name" TEXT,
    "action_type" TEXT,
    "channel" TEXT,
    "status" TEXT,
    "error_code" TEXT,
    "tokens" INTEGER,
    "prompt_tokens" INTEGER,
    "completion_tokens" INTEGER,
    "reported_awu" REAL,
    "elf_tokens" INTEGER,
    "action_input" TEXT,
    "user_id" TEXT,
    "case_id" TEXT,
    "started_at" TEXT,
    "source" TEXT,
    "billable" INTEGER,
    "units" INTEGER,
    "multiplier" REAL,
    "awu" REAL,
    "excess_awu" REAL,
    "credits" REAL,
    "cost_usd" REAL,
    "fingerprint" TEXT,
    "day" TEXT
);
CREATE INDEX idx_actions_started_at ON actions ("started_at");
CREATE INDEX idx_actions_session_id ON actions ("session_id");
CREATE TABLE findings (
    "id" TEXT PRIMARY KEY,
    "kind" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "severity" TEXT,
    "status" TEXT NOT NULL DEFAULT 'open' CHECK ("status" IN ('open', 'resolved')),
    "session_id" TEXT,
    "agent" TEXT,
    "action_name" TEXT,
    "action_ids" TEXT,
    "started_at" TEXT,
    "wasted_awu" REAL,
    "wasted_usd" REAL,
    "explanation" TEXT,
    "detail" TEXT,
    "first_seen_run" TEXT,
    "last_seen_run" TEXT,
    "resolved_run" TEXT
);
CREATE TABLE daily_usage (
    "day" TEXT NOT NULL,
    "agent" TEXT NOT NULL,
    "channel" TEXT NOT NULL,
    "actions" INTEGER,
    "billable_actions" INTEGER,
    "tokens" INTEGER,
    "awu" REAL,
    "reported_awu" REAL,
    "credits" REAL,
    "cost_usd" REAL,
    PRIMARY KEY ("day", "agent", "channel")
);
CREATE TABLE alerts (
    "id" TEXT PRIMARY KEY,
    "kind" TEXT NOT NULL,
    "period" TEXT,
    "threshold" REAL,
    "day" TEXT,
    "title" TEXT,
    "payload" TEXT,
    "created_run" TEXT,
    "created_at" TEXT
);
CREATE TABLE alert_deliveries (
    "alert_id" TEXT NOT NULL REFERENCES alerts ("id") ON DELETE CASCADE,
    "channel" TEXT NOT NULL,
    "state" TEXT NOT NULL DEFAULT 'pending' CHECK ("state" IN ('pending', 'sent', 'failed')),
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "last_error" TEXT,
    "delivered_at" TEXT,
    "delivered_run" TEXT,
    PRIMARY KEY ("alert_id", "channel")
);
CREATE TABLE sync_state (
    "source" TEXT PRIMARY KEY,
    "version" INTEGER NOT NULL,
    "state" TEXT NOT NULL,
    "updated_at" TEXT,
    "run_id" TEXT
);
"""

# v2: indexes for the queries every run makes (open findings of a window, undelivered
# alerts, thresholds of a period, usage of a day).
_V2_SCHEMA = """
CREATE INDEX idx_findings_status_started_at ON findings ("status", "started_at");
CREATE INDEX idx_findings_kind ON findings ("kind");
CREATE INDEX idx_alert_deliveries_state ON alert_deliveries ("state");
CREATE INDEX idx_alerts_kind_period ON alerts ("kind", "period");
CREATE INDEX idx_actions_day ON actions ("day");
"""

# v3: raw Data 360 rows (SPEC §11, connector.data360): tool-call usage events, their
# interaction steps (matched by GenAiGatewayRequestId) and sessions (voice).
_V3_SCHEMA = """
CREATE TABLE d360_events (
    "id" TEXT PRIMARY KEY, "request_id" TEXT, "started_at" TEXT, "session_id" TEXT,
    "interaction_id" TEXT, "agent_id" TEXT, "agent_name" TEXT, "tool_name" TEXT,
    "user_id" TEXT, "prompt_tokens" INTEGER, "completion_tokens" INTEGER, "tokens" INTEGER,
    "usage_quantity" TEXT, "is_metered" INTEGER, "is_billable" INTEGER, "skip_reason" TEXT,
    "usage_type" TEXT, "run_id" TEXT
);
CREATE INDEX idx_d360_events_started_at ON d360_events ("started_at");
CREATE TABLE d360_steps (
    "id" TEXT PRIMARY KEY, "request_id" TEXT, "interaction_id" TEXT, "step_type" TEXT,
    "prev_step_id" TEXT, "input_text" TEXT, "error_text" TEXT, "started_at" TEXT
);
CREATE INDEX idx_d360_steps_request_id ON d360_steps ("request_id");
CREATE TABLE d360_sessions (
    "id" TEXT PRIMARY KEY, "channel_type" TEXT, "voice_call_id" TEXT, "started_at" TEXT
)
"""


# v4: values that cannot be data (SPEC §3.5): bad records with their reason and location,
# and how often a bad log file was read (a torn one is downloaded again a bounded number of
# times). Files already stored as bad become bad records of reason `bad_file`.
_V4_SCHEMA = """
ALTER TABLE elf_files ADD COLUMN "attempts" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE elf_files ADD COLUMN "retryable" INTEGER NOT NULL DEFAULT 0;
CREATE TABLE bad_records (
    "source" TEXT NOT NULL, "key" TEXT NOT NULL, "reason" TEXT NOT NULL, "field" TEXT,
    "detail" TEXT, "record_id" TEXT, "file_id" TEXT, "line" INTEGER, "at" TEXT,
    "run_id" TEXT, "processed_at" TEXT,
    PRIMARY KEY ("source", "key")
);
CREATE INDEX idx_bad_records_at ON bad_records ("at");
CREATE INDEX idx_bad_records_file_id ON bad_records ("file_id");
UPDATE elf_files SET "attempts" = 1 WHERE "bad" = 1;
INSERT INTO bad_records ("source", "key", "reason", "field", "detail", "record_id", "file_id",
                         "line", "at", "run_id", "processed_at")
    SELECT 'eventlogfile', "id", 'bad_file', NULL, coalesce("error", 'unreadable'), NULL,
           "id", NULL, "log_date", "run_id", "processed_at"
    FROM elf_files WHERE "bad" = 1
"""


# v5: the days whose source rows changed, and at which inputs version (audit.store.basis):
# a run recomputes only the days that changed since the stored results were computed.
_V5_SCHEMA = """
CREATE TABLE changed_days ("day" TEXT PRIMARY KEY, "inputs_version" INTEGER NOT NULL)
"""


# v6: AWU per day × agent × action, summed beside the daily usage (audit.store.action_days):
# what spike detection reads, without summing weeks of actions again every run. The
# triggers note the days an action leaves (moved to another day, or deleted), which may lie
# outside the days a run sums anew; a store from before gets its sums from its actions.
#
# action_days_left holds a day as often as an action left it: no key nor NOT NULL. A
# constraint the trigger's INSERT could break makes SQLite keep a statement journal for
# every row of every upsert of actions, whether the trigger fires or not — twice the time
# of a first run's 100k inserts.
_NOTE_DAY_LEFT = 'INSERT INTO action_days_left ("day") VALUES (old."day")'
_V6_SCHEMA = (
    # "agent" may be null (neither a name nor an id): SQLite lets a primary key column of
    # a rowid table hold null, and the sums are written whole per day, never upserted
    """CREATE TABLE action_days (
        "day" TEXT NOT NULL, "agent" TEXT, "action_name" TEXT, "awu" REAL,
        PRIMARY KEY ("day", "agent", "action_name")
    )""",
    'CREATE TABLE action_days_left ("day" TEXT)',
    f"""CREATE TRIGGER actions_moved_day AFTER UPDATE OF "day" ON actions
        WHEN old."day" IS NOT new."day" AND old."day" IS NOT NULL
        BEGIN {_NOTE_DAY_LEFT}; END""",
    f"""CREATE TRIGGER actions_deleted AFTER DELETE ON actions WHEN old."day" IS NOT NULL
        BEGIN {_NOTE_DAY_LEFT}; END""",
    """INSERT INTO action_days ("day", "agent", "action_name", "awu")
        SELECT day, coalesce(agent_name, agent_id), action_name, sum(awu)
        FROM actions WHERE day IS NOT NULL GROUP BY 1, 2, 3""",
)


def _run_statements(statements: tuple[str, ...]) -> Callable[[sqlite3.Connection], None]:
    """A migration of statements that hold `;` themselves (a trigger's body)."""

    def apply(conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return apply


def _run_script(sql: str) -> Callable[[sqlite3.Connection], None]:
    def apply(conn: sqlite3.Connection) -> None:
        # statement by statement: executescript() would COMMIT the migration transaction
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement)

    return apply


#: Migration n+1 is MIGRATIONS[n]; append, never edit one that has shipped.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _run_script(_V1_SCHEMA),
    _run_script(_V2_SCHEMA),
    _run_script(_V3_SCHEMA),
    _run_script(_V4_SCHEMA),
    _run_script(_V5_SCHEMA),
    _run_statements(_V6_SCHEMA),
)
SCHEMA_VERSION = len(MIGRATIONS)

#: table → primary key columns (the tables `upsert`, `count` … accept)
TABLES: dict[str, tuple[str, ...]] = {
    "meta": ("key",),
    "runs": ("id",),
    "awi_records": ("id",),
    "elf_events": ("request_id",),
    "elf_files": ("id",),
    "cases": ("id",),
    "actions": ("id",),
    "findings": ("id",),
    "daily_usage": ("day", "agent", "channel"),
    "alerts": ("id",),
    "alert_deliveries": ("alert_id", "channel"),
    "sync_state": ("source",),
    "d360_events": ("id",),
    "d360_steps": ("id",),
    "d360_sessions": ("id",),
    "bad_records": ("source", "key"),
    "changed_days": ("day",),
    "action_days": ("day", "agent", "action_name"),
}


def schema_version(conn: sqlite3.Connection, path: Path | str) -> int:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        if tables - {"sqlite_sequence"}:
            raise StoreError(f"{path} is a SQLite database but not an awu-audit store")
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        return int(row[0]) if row else 0
    except (TypeError, ValueError):
        raise StoreError(f"store {path} has an unreadable schema_version: {row[0]!r}") from None


def migrate(db: sqlite_utils.Database, target: int | None = None, *, path: Path | str = "") -> int:
    """Bring the schema of `db` to `target` (default: the latest) in one transaction.

    Returns the version the store is at afterwards. A store newer than this code is refused.
    """
    target = SCHEMA_VERSION if target is None else target
    conn = db.conn
    where = path or "the store"
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn, where)
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store {where} was written by a newer awu-audit (schema {current}); "
                "upgrade awu-audit"
            )
        for version in range(current + 1, target + 1):
            MIGRATIONS[version - 1](conn)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(version),),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return max(current, target)

-- Foundation: events and daemon sessions.
-- Times are integer milliseconds since the Unix epoch, UTC.

CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms     INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    severity  TEXT    NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    message   TEXT    NOT NULL
);
CREATE INDEX events_ts ON events (ts_ms);
CREATE INDEX events_kind_ts ON events (kind, ts_ms);

-- One row per daemon start; stopped_ms stays NULL when the daemon died without a clean stop,
-- which the next start reports as an event.
CREATE TABLE daemon_sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started_ms  INTEGER NOT NULL,
    stopped_ms  INTEGER,
    pid         INTEGER NOT NULL,
    version     TEXT    NOT NULL
);

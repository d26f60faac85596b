-- Node health: the latest verdict per node (served at once after a restart), every check
-- result (pruned by summary.retention), and alerts with when they opened and resolved.

CREATE TABLE node_status (
    node           TEXT    PRIMARY KEY,
    state          TEXT    NOT NULL,
    score          INTEGER NOT NULL,
    last_check_ms  INTEGER,
    next_check_ms  INTEGER,
    checks_json    TEXT    NOT NULL DEFAULT '[]',
    gpus_json      TEXT    NOT NULL DEFAULT '[]',
    updated_ms     INTEGER NOT NULL
);

CREATE TABLE check_results (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    node         TEXT    NOT NULL,
    ts_ms        INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('pass', 'fail', 'skipped', 'hung')),
    value_json   TEXT,
    message      TEXT    NOT NULL,
    duration_ms  INTEGER NOT NULL
);
CREATE INDEX check_results_node_ts ON check_results (node, ts_ms);
CREATE INDEX check_results_ts ON check_results (ts_ms);

CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    node         TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    severity     TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    since_ms     INTEGER NOT NULL,
    resolved_ms  INTEGER
);
CREATE UNIQUE INDEX alerts_open ON alerts (node, key) WHERE resolved_ms IS NULL;

-- Run tracking: the last known state of every run (served at once after a restart, then
-- reconciled with the disk) and when each epoch of a run completed.

CREATE TABLE runs (
    root        TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    info_json   TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (root, id)
);
CREATE INDEX runs_status ON runs (status);

CREATE TABLE run_epochs (
    root          TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    epoch         INTEGER NOT NULL,
    completed_ms  INTEGER NOT NULL,
    PRIMARY KEY (root, id, epoch)
);

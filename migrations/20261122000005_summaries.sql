-- Nightly summaries: the snapshot each one was made from (the next one diffs against it), the
-- rendered Markdown/HTML/chart, and when housekeeping jobs last ran.

CREATE TABLE snapshots (
    id         INTEGER PRIMARY KEY,
    taken_ms   INTEGER NOT NULL,
    scheduled  INTEGER NOT NULL,          -- 1: made by the nightly schedule; 0: on request
    body       TEXT    NOT NULL           -- ugro_core::summary::Snapshot as JSON
);
CREATE INDEX snapshots_taken ON snapshots (taken_ms);

CREATE TABLE summaries (
    id               INTEGER PRIMARY KEY,
    date             TEXT    NOT NULL,    -- YYYY-MM-DD in summary.timezone
    scheduled        INTEGER NOT NULL,
    made_ms          INTEGER NOT NULL,
    window_start_ms  INTEGER NOT NULL,
    window_end_ms    INTEGER NOT NULL,
    snapshot_id      INTEGER REFERENCES snapshots (id) ON DELETE SET NULL,
    subject          TEXT    NOT NULL,
    markdown         TEXT    NOT NULL,
    html             TEXT    NOT NULL,
    chart_png        BLOB
);
-- Never two scheduled summaries for the same date, whatever races or restarts happen.
CREATE UNIQUE INDEX summaries_one_scheduled_per_date ON summaries (date) WHERE scheduled = 1;
CREATE INDEX summaries_date ON summaries (date, made_ms);

CREATE TABLE jobs (
    name     TEXT PRIMARY KEY,
    last_ms  INTEGER NOT NULL
);

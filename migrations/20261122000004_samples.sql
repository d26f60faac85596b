-- Resource samples: one row per GPU and one per node every summary.metrics_interval, read by
-- the nightly summary over a time window and pruned by summary.retention.
-- Compact on purpose (30 days × 20 nodes × 8 GPUs every 5 min ≈ 1.4 M GPU rows): nodes are a
-- small lookup table, rows have no rowid and are keyed by (time, node[, gpu]), so the window
-- query, a node's rows in a window and the prune are range scans of the primary key. Integral
-- REAL values (utilisation, temperature) are stored by SQLite as small integers; power is kept
-- in tenths of a watt.

CREATE TABLE sample_nodes (
    id    INTEGER PRIMARY KEY,
    name  TEXT    NOT NULL UNIQUE
);

CREATE TABLE gpu_samples (
    at_ms           INTEGER NOT NULL,
    node_id         INTEGER NOT NULL REFERENCES sample_nodes (id),
    gpu             INTEGER NOT NULL,
    util_pct        REAL    NOT NULL,
    mem_used_mib    INTEGER NOT NULL,
    mem_total_mib   INTEGER NOT NULL,
    temp_c          REAL,
    power_dw        INTEGER,            -- tenths of a watt
    processes       INTEGER,
    PRIMARY KEY (at_ms, node_id, gpu)
) WITHOUT ROWID;

CREATE TABLE node_samples (
    at_ms           INTEGER NOT NULL,
    node_id         INTEGER NOT NULL REFERENCES sample_nodes (id),
    cpu_pct         REAL,               -- NULL for a node's first sample
    load1           REAL    NOT NULL,
    load5           REAL    NOT NULL,
    load15          REAL    NOT NULL,
    cores           INTEGER NOT NULL,
    mem_avail_bytes INTEGER NOT NULL,
    mem_total_bytes INTEGER NOT NULL,
    PRIMARY KEY (at_ms, node_id)
) WITHOUT ROWID;

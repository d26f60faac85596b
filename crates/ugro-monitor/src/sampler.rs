//! GPU/CPU sampling of every node every `summary.metrics_interval`, stored in SQLite, with one critical event per outage.

//! Making a summary: snapshot of runs and nodes, the window's events and samples, ugro-core's rendering, the files under `summary.dir`, and the outbox.

//! When to make summaries and run retention: cron in the configured timezone (tokio-cron-scheduler), catch-up at start-up, one summary per date, with an injectable clock.

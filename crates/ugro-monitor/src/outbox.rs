//! The durable outbox: emails to send are stored first, retried with exponential backoff for up to 24 h across restarts; delivery and giving up are events.

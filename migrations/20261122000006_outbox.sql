-- The durable outbox: every email is stored here before the first attempt to send it, so a
-- mail server that is down (or a daemon restart) loses nothing. Retried with backoff until
-- delivered or given up 24 h after created_ms. Times are integer milliseconds since the Unix
-- epoch, UTC.

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms       INTEGER NOT NULL,
    summary_date     TEXT,                 -- YYYY-MM-DD of the summary it carries, if any
    subject          TEXT    NOT NULL DEFAULT '',
    envelope_from    TEXT    NOT NULL,
    recipients       TEXT    NOT NULL,     -- JSON array of addresses
    message          BLOB    NOT NULL,     -- the formatted RFC 5322 message
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    last_error       TEXT,
    state            TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'given_up')),
    done_ms          INTEGER               -- when delivered or given up
);
CREATE INDEX outbox_state_next ON outbox (state, next_attempt_ms);

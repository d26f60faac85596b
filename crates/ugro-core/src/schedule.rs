//! When summaries are due: cron occurrences in a timezone, the date a run belongs to, and the
//! catch-up of a missed run, all from a caller-supplied `now`.

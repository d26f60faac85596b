//! The durable outbox: emails to send are stored first, retried with exponential backoff for up to 24 h across restarts; delivery and giving up are events.
//!
//! [`enqueue`] writes the formatted message to SQLite and wakes the sender; nothing is sent
//! from the caller's task. The sender ([`run`], started by [`supervise`]) looks at the queue on
//! start, when woken, and when the next entry falls due; it sends at most [`BATCH`] messages
//! per pass, each within [`SEND_DEADLINE`], with the email settings in force at that moment.
//! A failure schedules a retry ([`next_delay`]: 5 s doubling up to 10 min) until
//! [`GIVE_UP_AFTER`] has passed since the message was queued ([`after_failure`]). No database
//! transaction is open while talking to the mail server; a message whose delivery could not
//! be recorded is not sent again by this process. Delivery is at-least-once: a daemon killed
//! between the server's acceptance and the database update sends that message again.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use ugro_core::event::EventKind;

use chrono::{DateTime, NaiveDate, Utc};
use lettre::message::header;
use serde::Serialize;
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use ugro_core::health::Severity;

use crate::config::EmailConfig;
use crate::host::Host;
use crate::mail;
use crate::store::{NewEvent, Store, StoreError, from_ms, to_ms};
use crate::systemd::Heartbeat;

/// Delay before the first retry; doubled after every further failure.
pub const BASE_DELAY: Duration = Duration::from_secs(5);
/// Longest delay between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(10 * 60);
/// A message still undelivered this long after it was queued is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Deadline of one delivery (connect, TLS, AUTH, transfer).
pub const SEND_DEADLINE: Duration = Duration::from_secs(60);
/// Most messages sent in one pass (the next pass follows at once when more are due).
pub const BATCH: u32 = 10;
/// How often the sender reports to its heartbeat, also while a delivery is under way.
const BEAT_EVERY: Duration = Duration::from_secs(10);

/// The outbox's in-memory side: wakes the sender when a message is queued.
#[derive(Debug, Default)]
pub struct Outbox {
    wake: tokio::sync::Notify,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells the sender to look at the queue now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// What the sender needs from the daemon beyond the common [`Host`] services: the queue's
/// wake-up. The daemon's `Shared` implements it.
pub trait OutboxHost: Host {
    fn outbox(&self) -> &Outbox;
}

/// Where a queued message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    Pending,
    Delivered,
    GivenUp,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::GivenUp => "given_up",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "given_up" => Some(Self::GivenUp),
            _ => None,
        }
    }
}

/// A message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxMessage {
    pub summary_date: Option<NaiveDate>,
    pub subject: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    /// The formatted message (headers and body).
    pub message: Vec<u8>,
}

impl NewOutboxMessage {
    /// Takes the envelope, subject and formatted bytes of a built message.
    pub fn from_message(summary_date: Option<NaiveDate>, message: &lettre::Message) -> Self {
        let envelope = message.envelope();
        Self {
            summary_date,
            subject: message
                .headers()
                .get::<header::Subject>()
                .map(|s| s.as_ref().to_string())
                .unwrap_or_default(),
            envelope_from: envelope.from().map(|a| a.to_string()).unwrap_or_default(),
            recipients: envelope.to().iter().map(|a| a.to_string()).collect(),
            message: message.formatted(),
        }
    }
}

/// A queued message as the API lists it (without the message bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxEntry {
    pub id: i64,
    pub created: DateTime<Utc>,
    pub summary_date: Option<NaiveDate>,
    pub subject: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub attempts: u32,
    /// When the next attempt is due (pending entries only).
    pub next_attempt: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub state: OutboxState,
    /// When it was delivered or given up.
    pub done: Option<DateTime<Utc>>,
}

/// A pending message whose next attempt is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueMessage {
    pub id: i64,
    pub created: DateTime<Utc>,
    pub subject: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    /// Failed attempts so far.
    pub attempts: u32,
    pub message: Vec<u8>,
}

fn recipients_from_json(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn attempts_from_db(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

impl Store {
    /// Stores a message to send, due at once; returns its id.
    pub async fn outbox_enqueue(
        &self,
        at: DateTime<Utc>,
        m: &NewOutboxMessage,
    ) -> Result<i64, StoreError> {
        let recipients = serde_json::Value::from(m.recipients.clone()).to_string();
        // `execute`, not `RETURNING id` + `fetch_one`: that resets the statement before its
        // implicit COMMIT can report a full disk, and a lost message looked stored.
        let _turn = self.write_turn("insert outbox message").await?;
        let done = sqlx::query(
            "INSERT INTO outbox (created_ms, summary_date, subject, envelope_from, recipients, message, next_attempt_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?1)",
        )
        .bind(to_ms(at))
        .bind(m.summary_date.map(|d| d.format("%Y-%m-%d").to_string()))
        .bind(&m.subject)
        .bind(&m.envelope_from)
        .bind(recipients)
        .bind(&m.message)
        .execute(self.pool())
        .await
        .map_err(self.err("insert outbox message"))?;
        Ok(done.last_insert_rowid())
    }

    /// Pending messages due at `now`, earliest first, at most `limit`.
    pub async fn outbox_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, created_ms, subject, envelope_from, recipients, attempts, message FROM outbox \
             WHERE state = 'pending' AND next_attempt_ms <= ? ORDER BY next_attempt_ms, id LIMIT ?",
        )
        .bind(to_ms(now))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(self.err("select due outbox messages"))?;
        Ok(rows
            .into_iter()
            .map(|r| DueMessage {
                id: r.get(0),
                created: from_ms(r.get(1)),
                subject: r.get(2),
                envelope_from: r.get(3),
                recipients: recipients_from_json(r.get::<&str, _>(4)),
                attempts: attempts_from_db(r.get(5)),
                message: r.get(6),
            })
            .collect())
    }

    /// When the earliest pending message falls due, if any is pending.
    pub async fn outbox_next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ms: Option<i64> =
            sqlx::query_scalar("SELECT min(next_attempt_ms) FROM outbox WHERE state = 'pending'")
                .fetch_one(self.pool())
                .await
                .map_err(self.err("select next outbox due time"))?;
        Ok(ms.map(from_ms))
    }

    /// How many messages are pending.
    pub async fn outbox_pending(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE state = 'pending'")
            .fetch_one(self.pool())
            .await
            .map_err(self.err("count pending outbox messages"))?;
        Ok(n.max(0) as u64)
    }

    /// Marks a pending message delivered after `attempts` attempts (this one included).
    /// Returns false when it was not pending.
    pub async fn outbox_mark_delivered(
        &self,
        id: i64,
        at: DateTime<Utc>,
        attempts: u32,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE outbox SET state = 'delivered', attempts = ?, done_ms = ? \
             WHERE id = ? AND state = 'pending'",
        )
        .bind(i64::from(attempts))
        .bind(to_ms(at))
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(self.err("mark outbox message delivered"))?;
        Ok(r.rows_affected() == 1)
    }

    /// Records a failed attempt of a pending message and when to try again.
    pub async fn outbox_mark_retry(
        &self,
        id: i64,
        attempts: u32,
        next_attempt: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE outbox SET attempts = ?, next_attempt_ms = ?, last_error = ? \
             WHERE id = ? AND state = 'pending'",
        )
        .bind(i64::from(attempts))
        .bind(to_ms(next_attempt))
        .bind(error)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(self.err("schedule outbox retry"))?;
        Ok(r.rows_affected() == 1)
    }

    /// Gives a pending message up after its last failed attempt.
    pub async fn outbox_mark_given_up(
        &self,
        id: i64,
        at: DateTime<Utc>,
        attempts: u32,
        error: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE outbox SET state = 'given_up', attempts = ?, done_ms = ?, last_error = ? \
             WHERE id = ? AND state = 'pending'",
        )
        .bind(i64::from(attempts))
        .bind(to_ms(at))
        .bind(error)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(self.err("mark outbox message given up"))?;
        Ok(r.rows_affected() == 1)
    }

    /// The newest `limit` messages (any state), newest first.
    pub async fn outbox_list(&self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, created_ms, summary_date, subject, envelope_from, recipients, attempts, \
                    next_attempt_ms, last_error, state, done_ms \
             FROM outbox ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(self.err("list outbox"))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let state = OutboxState::parse(r.get::<&str, _>(9)).unwrap_or(OutboxState::Pending);
                OutboxEntry {
                    id: r.get(0),
                    created: from_ms(r.get(1)),
                    summary_date: r
                        .get::<Option<&str>, _>(2)
                        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
                    subject: r.get(3),
                    envelope_from: r.get(4),
                    recipients: recipients_from_json(r.get::<&str, _>(5)),
                    attempts: attempts_from_db(r.get(6)),
                    next_attempt: (state == OutboxState::Pending).then(|| from_ms(r.get(7))),
                    last_error: r.get(8),
                    state,
                    done: r.get::<Option<i64>, _>(10).map(from_ms),
                }
            })
            .collect())
    }

    /// Deletes delivered and given-up messages finished before `before`; returns how many.
    pub async fn outbox_prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM outbox WHERE state != 'pending' AND done_ms < ?")
            .bind(to_ms(before))
            .execute(self.pool())
            .await
            .map_err(self.err("prune outbox"))?;
        Ok(r.rows_affected())
    }
}

/// Delay after the `attempts`-th failure: 5 s, 10 s, 20 s, … capped at 10 min. Pure.
pub fn next_delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    BASE_DELAY.saturating_mul(1u32 << doublings).min(MAX_DELAY)
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time (never later than the give-up time, so the last attempt is
    /// made right at it).
    Retry(DateTime<Utc>),
    GiveUp,
}

/// The decision after the `attempts`-th failed attempt (this one included) of a message
/// queued at `created`, failing at `now`. Pure.
pub fn after_failure(created: DateTime<Utc>, attempts: u32, now: DateTime<Utc>) -> AfterFailure {
    let give_up_at = give_up_at(created);
    if now >= give_up_at {
        return AfterFailure::GiveUp;
    }
    let delay = chrono::Duration::from_std(next_delay(attempts)).unwrap_or(chrono::Duration::MAX);
    AfterFailure::Retry(
        now.checked_add_signed(delay)
            .unwrap_or(give_up_at)
            .min(give_up_at),
    )
}

/// When a message queued at `created` is given up.
pub fn give_up_at(created: DateTime<Utc>) -> DateTime<Utc> {
    chrono::Duration::from_std(GIVE_UP_AFTER)
        .ok()
        .and_then(|d| created.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Queues `message` (stored before anything is sent) and wakes the sender. Returns its id.
pub async fn enqueue<H: OutboxHost>(
    host: &H,
    summary_date: Option<NaiveDate>,
    message: lettre::Message,
) -> Result<i64, StoreError> {
    let m = NewOutboxMessage::from_message(summary_date, &message);
    let id = host.store().outbox_enqueue(Utc::now(), &m).await?;
    tracing::info!(
        id,
        subject = %m.subject,
        recipients = m.recipients.len(),
        "email queued"
    );
    host.outbox().wake();
    Ok(id)
}

/// Sends queued emails until `cancel` (the daemon's entry point).
pub async fn supervise<H: OutboxHost>(host: Arc<H>, cancel: CancellationToken, hb: Heartbeat) {
    run(&*host, &cancel, &hb).await;
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Pass {
    /// A full batch was due: look again at once.
    more: bool,
    cancelled: bool,
    /// The database failed; wait before the next pass.
    store_failed: bool,
}

/// The sender loop: a pass on start, on [`Outbox::wake`], when the next message falls due,
/// and at least every 10 s (which also picks up config reloads). Returns on `cancel`.
pub async fn run<H: OutboxHost>(host: &H, cancel: &CancellationToken, hb: &Heartbeat) {
    let mut sender = Sender {
        host,
        cancel,
        hb,
        unrecorded: HashSet::new(),
    };
    let mut disabled_logged = false;
    loop {
        hb.beat();
        if cancel.is_cancelled() {
            return;
        }
        let cfg = host.config().email.clone();
        let mut wait = BEAT_EVERY;
        if !cfg.enabled {
            if !disabled_logged {
                match host.store().outbox_pending().await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(
                            pending = n,
                            "email is disabled in the configuration; queued emails stay pending until it is enabled"
                        );
                        disabled_logged = true;
                    }
                    Err(e) => tracing::error!(error = %e, "cannot count queued emails"),
                }
            }
        } else {
            disabled_logged = false;
            let pass = sender.pass(&cfg).await;
            if pass.cancelled {
                return;
            }
            if pass.more && !pass.store_failed {
                continue;
            }
            if !pass.store_failed {
                match host.store().outbox_next_due().await {
                    Ok(Some(due)) => {
                        let until = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                        wait = wait.min(until);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = host.outbox().wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

struct Sender<'a, H> {
    host: &'a H,
    cancel: &'a CancellationToken,
    hb: &'a Heartbeat,
    /// Delivered by this process, but the database did not take the news: never sent again,
    /// only the record is retried.
    unrecorded: HashSet<i64>,
}

impl<H: OutboxHost> Sender<'_, H> {
    /// Awaits `fut`, beating the heartbeat meanwhile; `None` when cancelled.
    async fn beating<F: Future>(&self, fut: F) -> Option<F::Output> {
        let mut tick = tokio::time::interval(BEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return None,
                r = &mut fut => return Some(r),
                _ = tick.tick() => self.hb.beat(),
            }
        }
    }

    /// Sends up to [`BATCH`] due messages, one at a time.
    async fn pass(&mut self, cfg: &EmailConfig) -> Pass {
        let store = self.host.store();
        let due = match store.outbox_due(Utc::now(), BATCH).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                return Pass {
                    store_failed: true,
                    ..Pass::default()
                };
            }
        };
        let mut pass = Pass {
            more: due.len() >= BATCH as usize,
            ..Pass::default()
        };
        for m in due {
            self.hb.beat();
            let attempts = m.attempts.saturating_add(1);
            if self.unrecorded.contains(&m.id) {
                match store
                    .outbox_mark_delivered(m.id, Utc::now(), attempts)
                    .await
                {
                    Ok(_) => {
                        self.unrecorded.remove(&m.id);
                    }
                    Err(e) => {
                        tracing::error!(id = m.id, error = %e, "cannot record a delivered email");
                        pass.store_failed = true;
                    }
                }
                continue;
            }
            let send = mail::send_raw(
                cfg,
                &m.envelope_from,
                &m.recipients,
                &m.message,
                SEND_DEADLINE,
            );
            let Some(result) = self.beating(send).await else {
                // Stopping: the message stays pending and is sent after the restart.
                pass.cancelled = true;
                return pass;
            };
            let now = Utc::now();
            match result {
                Ok(()) => self.delivered(cfg, &m, attempts, now, &mut pass).await,
                Err(e) => self.failed(&m, attempts, now, &e, &mut pass).await,
            }
        }
        pass
    }

    async fn delivered(
        &mut self,
        cfg: &EmailConfig,
        m: &DueMessage,
        attempts: u32,
        now: DateTime<Utc>,
        pass: &mut Pass,
    ) {
        if let Err(e) = self
            .host
            .store()
            .outbox_mark_delivered(m.id, now, attempts)
            .await
        {
            tracing::error!(id = m.id, error = %e, "cannot record a delivered email; it will not be sent again");
            self.unrecorded.insert(m.id);
            pass.store_failed = true;
        }
        let n = m.recipients.len();
        self.host
            .event(NewEvent::new(
                EventKind::EmailDelivered,
                "email",
                Severity::Info,
                format!(
                    "email #{} \"{}\" delivered to {n} recipient{} via {} after {attempts} attempt{}",
                    m.id,
                    m.subject,
                    if n == 1 { "" } else { "s" },
                    mail::server_name(cfg),
                    if attempts == 1 { "" } else { "s" },
                ),
            ))
            .await;
    }

    async fn failed(
        &mut self,
        m: &DueMessage,
        attempts: u32,
        now: DateTime<Utc>,
        error: &mail::MailError,
        pass: &mut Pass,
    ) {
        let text = error.to_string();
        let store = self.host.store();
        match after_failure(m.created, attempts, now) {
            AfterFailure::Retry(at) => {
                if let Err(e) = store.outbox_mark_retry(m.id, attempts, at, &text).await {
                    tracing::error!(id = m.id, error = %e, "cannot schedule an email retry");
                    pass.store_failed = true;
                }
                if attempts == 1 {
                    self.host
                        .event(NewEvent::new(
                            EventKind::EmailDeferred,
                            "email",
                            Severity::Warning,
                            format!(
                                "email #{} \"{}\" could not be sent: {text}; retrying with backoff until {}",
                                m.id,
                                m.subject,
                                give_up_at(m.created).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                            ),
                        ))
                        .await;
                } else {
                    tracing::warn!(
                        id = m.id,
                        attempts,
                        next_attempt = %at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        error = %text,
                        "email still not sent"
                    );
                }
            }
            AfterFailure::GiveUp => {
                if let Err(e) = store.outbox_mark_given_up(m.id, now, attempts, &text).await {
                    tracing::error!(id = m.id, error = %e, "cannot record a given-up email");
                    pass.store_failed = true;
                }
                let hours = (now - m.created).num_minutes() as f64 / 60.0;
                self.host
                    .event(NewEvent::new(
                        EventKind::EmailGivenUp,
                        "email",
                        Severity::Critical,
                        format!(
                            "email #{} \"{}\" given up after {attempts} attempt{} over {hours:.1} h: {text}",
                            m.id,
                            m.subject,
                            if attempts == 1 { "" } else { "s" },
                        ),
                    ))
                    .await;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn backoff_doubles_from_5s_and_caps_at_10_min() {
        let secs: Vec<u64> = (1..=10).map(|a| next_delay(a).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert_eq!(next_delay(0), BASE_DELAY);
        assert_eq!(next_delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn retries_until_24h_after_creation_then_gives_up() {
        let created = t("2026-11-22T23:55:00Z");
        assert_eq!(
            after_failure(created, 1, created),
            AfterFailure::Retry(t("2026-11-22T23:55:05Z"))
        );
        assert_eq!(
            after_failure(created, 9, t("2026-11-23T10:00:00Z")),
            AfterFailure::Retry(t("2026-11-23T10:10:00Z"))
        );
        // The last retry is clamped to the give-up time, and a failure then gives up.
        assert_eq!(
            after_failure(created, 200, t("2026-11-23T23:50:00Z")),
            AfterFailure::Retry(t("2026-11-23T23:55:00Z"))
        );
        assert_eq!(
            after_failure(created, 201, t("2026-11-23T23:55:00Z")),
            AfterFailure::GiveUp
        );
        assert_eq!(
            after_failure(created, 1, t("2026-11-25T00:00:00Z")),
            AfterFailure::GiveUp
        );
    }

    #[test]
    fn the_number_of_attempts_in_24h_is_bounded() {
        // Failing every time at the scheduled moment: how many attempts until giving up.
        let created = t("2026-11-22T23:55:00Z");
        let mut now = created;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match after_failure(created, attempts, now) {
                AfterFailure::Retry(at) => {
                    assert!(at > now);
                    now = at;
                }
                AfterFailure::GiveUp => break,
            }
        }
        assert_eq!(now, give_up_at(created));
        // 8 attempts reach the 10-min cap after ~21 min, then one every 10 min: ~150 in 24 h.
        assert!((140..=160).contains(&attempts), "{attempts}");
    }

    #[test]
    fn state_names_round_trip() {
        for s in [
            OutboxState::Pending,
            OutboxState::Delivered,
            OutboxState::GivenUp,
        ] {
            assert_eq!(OutboxState::parse(s.as_str()), Some(s));
        }
        assert_eq!(OutboxState::parse("sent"), None);
    }
}

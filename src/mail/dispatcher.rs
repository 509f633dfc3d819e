//! The outbox dispatcher: a std thread, started by `serve`, that delivers the
//! messages queued in `email_outbox`.
//!
//! - It claims due messages in small batches (see `db::outbox::claim_due`:
//!   `FOR UPDATE SKIP LOCKED` plus a lease), so several `serve` instances share
//!   one outbox and each message is sent once.
//! - A batch is posted concurrently, one scoped thread per message, so one
//!   slow answer from the email API does not hold up the rest.
//! - A failed post is retried after 1 s, 2 s, 4 s, … (±20 % jitter) up to
//!   `EMAIL_MAX_ATTEMPTS`, then the message is dead with its last error kept.
//!   A code lives a minute, so two failed posts still deliver within seconds.
//! - A message whose code expired is not sent. Once a message is sent, dead or
//!   expired its bodies are cleared.
//! - It sleeps until the next retry is due or a `NOTIFY email_outbox` arrives
//!   (a trigger sends one when any process queues a message), and sweeps every
//!   few seconds as a safety net (leases of a crashed instance, lost
//!   notifications).
//! - On stop it claims nothing more, finishes the posts in flight and records
//!   their outcome before the thread ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::Utc;
use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::{FutureExt, StreamExt};
use rand::Rng;

use crate::db::outbox::{self, Message, MessageState};
use crate::mail::transport::{Envelope, SEND_TIMEOUT, SendError, Transport};

/// Messages claimed (and posted concurrently) at once.
const BATCH: i64 = 16;
/// A claim's lease. A post starts right after the claim and gives up after
/// `SEND_TIMEOUT`, so the lease never runs out while this instance may still
/// send; if the instance dies, the message is due again after this long.
const LEASE: Duration = Duration::from_secs(SEND_TIMEOUT.as_secs() + 10);
const _: () = assert!(LEASE.as_secs() > SEND_TIMEOUT.as_secs());
/// The longest sleep without looking at the outbox.
const SWEEP: Duration = Duration::from_secs(5);
/// Pause before reconnecting after the database connection failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// First retry delay; it doubles with every failed attempt.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(3600);

/// What the dispatcher needs.
pub struct Config {
    pub database_url: String,
    pub transport: Transport,
    /// The `from` of every message (`SYSTEM_EMAIL`).
    pub from: String,
    pub max_attempts: u32,
}

/// The running dispatcher thread.
pub struct Dispatcher {
    thread: Option<JoinHandle<()>>,
    stop: Arc<Stop>,
}

#[derive(Default)]
struct Stop {
    requested: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Stop {
    fn requested(&self) -> bool {
        AtomicBool::load(&self.requested, Ordering::Acquire)
    }

    fn request(&self) {
        self.requested.store(true, Ordering::Release);
        // notify_one keeps a permit if the worker is not waiting right now.
        self.wake.notify_one();
    }
}

impl Dispatcher {
    pub fn start(config: Config) -> std::io::Result<Self> {
        let stop = Arc::new(Stop::default());
        let thread = std::thread::Builder::new()
            .name("email-dispatcher".into())
            .spawn({
                let stop = stop.clone();
                move || run(config, stop)
            })?;
        Ok(Self {
            thread: Some(thread),
            stop,
        })
    }

    /// Stops claiming, waits for the posts in flight, and joins the thread.
    pub fn stop(mut self) {
        self.stop.request();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("email dispatcher thread panicked");
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.stop.request();
    }
}

fn run(config: Config, stop: Arc<Stop>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "email dispatcher cannot start its runtime");
            return;
        }
    };
    runtime.block_on(Worker { config, stop }.run());
    tracing::info!("email dispatcher stopped");
}

struct Worker {
    config: Config,
    stop: Arc<Stop>,
}

/// The outcome of one post.
struct Outcome {
    message: Message,
    result: Result<(), SendError>,
}

impl Worker {
    async fn run(&self) {
        tracing::info!("email dispatcher started");
        while !self.stop.requested() {
            match crate::db::connect(&self.config.database_url).await {
                Ok(mut conn) => {
                    if let Err(err) = self.listen(&mut conn).await {
                        tracing::warn!(error = %err, "email dispatcher lost its database connection");
                        self.pause(RECONNECT_DELAY).await;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "email dispatcher cannot connect to the database");
                    self.pause(RECONNECT_DELAY).await;
                }
            }
        }
    }

    /// Sleeps for `duration` unless asked to stop.
    async fn pause(&self, duration: Duration) {
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = self.stop.wake.notified() => {}
        }
    }

    /// Drains the outbox, then sleeps until a notification, the next due
    /// retry or the sweep, and again, until a stop is requested or the
    /// connection fails.
    async fn listen(&self, conn: &mut AsyncPgConnection) -> QueryResult<()> {
        diesel::sql_query("LISTEN email_outbox")
            .execute(conn)
            .await?;
        loop {
            self.drain(conn).await?;
            if self.stop.requested() {
                return Ok(());
            }
            let wait = match outbox::next_due_at(conn).await? {
                Some(due) => (due - Utc::now()).to_std().unwrap_or_default(),
                None => SWEEP,
            };
            // Something due now but not claimable is being claimed by another
            // instance; look again shortly rather than spin.
            let wait = wait.clamp(Duration::from_millis(20), SWEEP);

            let mut notifications = std::pin::pin!(conn.notifications_stream());
            tokio::select! {
                notification = notifications.next() => match notification {
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(err),
                    None => return Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::ClosedConnection,
                        Box::new("the listening connection closed".to_owned()),
                    )),
                },
                () = tokio::time::sleep(wait) => {}
                () = self.stop.wake.notified() => {}
            }
            // One drain serves every notification that arrived meanwhile.
            while let Some(Some(Ok(_))) = notifications.next().now_or_never() {}
        }
    }

    /// Sends due messages until none is left or a stop is requested.
    async fn drain(&self, conn: &mut AsyncPgConnection) -> QueryResult<()> {
        while !self.stop.requested() {
            let batch = outbox::claim_due(conn, Utc::now(), LEASE, BATCH).await?;
            if batch.is_empty() {
                return Ok(());
            }
            let claimed = batch.len();
            let mut sent = Vec::new();
            for Outcome { message, result } in self.post_all(conn, batch).await? {
                match result {
                    Ok(()) => {
                        tracing::info!(
                            email_id = message.id,
                            attempts = message.attempts,
                            "activation email sent"
                        );
                        sent.push(message.id);
                    }
                    Err(err) => {
                        self.record_failure(conn, &message, &err.to_string())
                            .await?
                    }
                }
            }
            // The usual case, one statement for the whole batch.
            if !sent.is_empty() {
                outbox::finish(conn, &sent, MessageState::Sent, Utc::now(), None).await?;
            }
            if claimed < usize::try_from(BATCH).unwrap_or(usize::MAX) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Finishes expired messages and posts the others concurrently.
    async fn post_all(
        &self,
        conn: &mut AsyncPgConnection,
        batch: Vec<Message>,
    ) -> QueryResult<Vec<Outcome>> {
        let now = Utc::now();
        let (expired, sendable): (Vec<Message>, Vec<Message>) = batch
            .into_iter()
            .partition(|message| message.expires_at <= now);
        if !expired.is_empty() {
            let ids: Vec<i64> = expired.iter().map(|message| message.id).collect();
            tracing::info!(emails = ?ids, "activation emails expired before they could be sent");
            outbox::finish(conn, &ids, MessageState::Expired, now, None).await?;
        }
        let transport = &self.config.transport;
        let from = self.config.from.as_str();
        Ok(std::thread::scope(|scope| {
            let posts: Vec<_> = sendable
                .into_iter()
                .map(|message| {
                    scope.spawn(move || {
                        let result = send(transport, from, &message);
                        Outcome { message, result }
                    })
                })
                .collect();
            posts
                .into_iter()
                .filter_map(|post| post.join().ok())
                .collect()
        }))
    }

    /// Schedules a retry of a failed post, or gives the message up.
    async fn record_failure(
        &self,
        conn: &mut AsyncPgConnection,
        message: &Message,
        error: &str,
    ) -> QueryResult<()> {
        let now = Utc::now();
        let attempts = u32::try_from(message.attempts).unwrap_or(u32::MAX);
        if attempts >= self.config.max_attempts {
            tracing::warn!(
                email_id = message.id,
                attempts,
                error,
                "activation email is dead"
            );
            return outbox::finish(conn, &[message.id], MessageState::Dead, now, Some(error)).await;
        }
        let retry_at = now + retry_delay(attempts);
        if retry_at >= message.expires_at {
            tracing::warn!(
                email_id = message.id,
                attempts,
                error,
                "activation email expired while retrying"
            );
            return outbox::finish(conn, &[message.id], MessageState::Expired, now, Some(error))
                .await;
        }
        tracing::warn!(email_id = message.id, attempts, error, %retry_at, "activation email failed; will retry");
        outbox::retry_at(conn, message.id, retry_at, error).await
    }
}

fn send(transport: &Transport, from: &str, message: &Message) -> Result<(), SendError> {
    let (Some(body), Some(html)) = (message.body_text.as_deref(), message.body_html.as_deref())
    else {
        return Err(SendError::Missing);
    };
    transport.send(&Envelope {
        from,
        to: &message.recipient,
        subject: &message.subject,
        body,
        html,
    })
}

/// The delay before attempt `failed + 1`: 1 s doubled per failed attempt,
/// with ±20 % jitter so instances that failed together do not retry together.
fn retry_delay(failed: u32) -> chrono::TimeDelta {
    let base = FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(failed.saturating_sub(1)))
        .min(MAX_RETRY);
    let jitter = rand::rng().random_range(0.8..1.2);
    crate::duration::to_delta(base.mul_f64(jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_near_a_second_and_double() {
        for (failed, expected) in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)] {
            for _ in 0..50 {
                let delay = retry_delay(failed).as_seconds_f64();
                assert!(
                    (expected * 0.8..=expected * 1.2).contains(&delay),
                    "after {failed} failures: {delay}s"
                );
            }
        }
    }

    #[test]
    fn retries_are_capped_at_an_hour() {
        let delay = retry_delay(40).as_seconds_f64();
        assert!(delay <= 3600.0 * 1.2, "{delay}");
    }
}

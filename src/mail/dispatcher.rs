//! The outbox dispatcher: a std thread, started by `serve`, that delivers the
//! messages queued in `email_outbox`.
//!
//! - A window of up to `EMAIL_CONCURRENCY` sends is in flight at all times:
//!   when one finishes, its outcome is recorded at once and a message is
//!   claimed for the free slot, so a slow answer never holds back the rest.
//! - Claims are `FOR UPDATE SKIP LOCKED` plus a lease (see
//!   `db::outbox::claim_due`): several `serve` instances share one outbox and
//!   each message is sent once; a message whose sender died is due again when
//!   its lease runs out (at least once across a crash).
//! - Outcomes, as the transport sorts them: delivered; throttled (HTTP 429,
//!   SMTP 421 or 452), which pauses all claiming for `Retry-After` (1 s when
//!   absent, doubling while throttling goes on) and is not an attempt;
//!   transient, retried after 1 s, 2 s, 4 s, … (±20 % jitter) up to
//!   `EMAIL_MAX_ATTEMPTS`; permanent, dead at once with the provider's
//!   status and reason kept.
//! - A message whose code expired is not sent; a retry that would come after
//!   the expiry expires it instead. Finished messages lose their bodies.
//! - Each outcome is recorded on its own: failing to record one loses no
//!   other (unrecorded outcomes are kept and recorded after reconnecting). A
//!   send that panics is caught, logged and counted as a failed attempt.
//! - It wakes on `NOTIFY email_outbox` (`mail::listener`), when the next
//!   retry is due, or at the latest every few seconds (leases of a crashed
//!   instance, lost notifications).
//! - On stop it claims nothing more, lets the sends in flight finish within
//!   the grace period, records them and ends.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::db::outbox::{self, LastError, Message, MessageState, Payload};
use crate::mail::templates::Templates;
use crate::mail::transport::{Failure, Outgoing, SEND_TIMEOUT, Transport};
use crate::seal::Sealer;

/// A claim's lease. A send starts right after its claim and gives up after
/// `SEND_TIMEOUT`, and its outcome is recorded right after, so the lease
/// does not run out while this instance may still send; if the instance
/// dies, the message is due again after this long.
const LEASE: Duration = Duration::from_secs(SEND_TIMEOUT.as_secs() + 10);
const _: () = assert!(LEASE.as_secs() > SEND_TIMEOUT.as_secs());
/// The longest sleep without looking at the outbox.
const SWEEP: Duration = Duration::from_secs(5);
/// Pauses before reconnecting to the database: the first, and the longest.
const FIRST_RECONNECT: Duration = Duration::from_millis(500);
const MAX_RECONNECT: Duration = Duration::from_secs(30);
/// First retry delay; it doubles with every failed attempt.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// The pause after a 429 without `Retry-After`; it doubles while 429s go on.
const FIRST_THROTTLE: Duration = Duration::from_secs(1);
/// No pause is longer: a code lives a minute, and a provider that asks for
/// hours is better asked again.
const MAX_THROTTLE: Duration = Duration::from_secs(300);

/// What the dispatcher needs.
pub struct Config {
    pub database_url: String,
    pub courier: Courier,
    /// Sends in flight at most (`EMAIL_CONCURRENCY`).
    pub concurrency: usize,
    /// How long the sends in flight may take to finish once a stop is asked.
    pub grace: Duration,
}

/// The running dispatcher thread.
pub struct Dispatcher {
    thread: Option<JoinHandle<()>>,
    stop: Arc<Stop>,
}

/// A stop request, seen by the dispatcher between any two steps.
#[derive(Default)]
struct Stop {
    requested: AtomicBool,
    wake: Notify,
}

impl Stop {
    fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
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

    /// A handle that asks the dispatcher to stop claiming and finish what is
    /// in flight, without waiting: for the server's shutdown to call.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// Stops claiming, waits for the sends in flight (within the grace
    /// period), and joins the thread.
    pub fn stop(mut self) {
        self.stop.request();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("email dispatcher thread panicked");
        }
    }
}

/// Asks a [`Dispatcher`] to stop; see [`Dispatcher::stop_handle`].
#[derive(Clone)]
pub struct StopHandle(Arc<Stop>);

impl StopHandle {
    pub fn request(&self) {
        self.0.request();
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
    runtime.block_on(Worker::new(config, stop).run());
    tracing::info!("email dispatcher stopped");
}

/// Writes messages, sends them and records their outcomes: the part of
/// delivery that the dispatcher's loop and [`deliver_due`] share. Cheap to
/// clone.
#[derive(Clone)]
pub struct Courier {
    pub transport: Transport,
    pub templates: Arc<Templates>,
    /// Opens the messages' sealed payloads.
    pub sealer: Sealer,
    /// The `from` of every message (`SYSTEM_EMAIL`).
    pub from: Arc<str>,
    pub max_attempts: u32,
}

/// What became of one message's send (or of its claim, for an expired one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Delivered,
    Retried,
    Throttled,
    Dead,
    Expired,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retried => "retried",
            Self::Throttled => "throttled",
            Self::Dead => "dead",
            Self::Expired => "expired",
        }
    }
}

/// A send that finished, waiting to be recorded.
struct Sent {
    message: Message,
    result: Result<(), Failure>,
}

/// Outcomes counted by result.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub delivered: usize,
    pub retried: usize,
    pub throttled: usize,
    pub dead: usize,
    pub expired: usize,
}

impl Tally {
    fn count(&mut self, result: Outcome, n: usize) {
        crate::metrics::get().emails(result.as_str(), n);
        match result {
            Outcome::Delivered => self.delivered += n,
            Outcome::Retried => self.retried += n,
            Outcome::Throttled => self.throttled += n,
            Outcome::Dead => self.dead += n,
            Outcome::Expired => self.expired += n,
        }
    }
}

impl Courier {
    /// Sends one claimed message. Never panics: see [`caught`].
    async fn send(self, message: Message) -> Sent {
        let result = caught(message.id, self.try_send(&message)).await;
        Sent { message, result }
    }

    /// Opens the message's payload, writes the email and sends it.
    async fn try_send(&self, message: &Message) -> Result<(), Failure> {
        let permanent = |reason: String| Failure::Permanent {
            status: None,
            reason,
        };
        let sealed = message
            .payload
            .as_deref()
            .ok_or_else(|| permanent("the message has no payload left to send".into()))?;
        let payload = Payload::open(&self.sealer, message.user_id, sealed)
            .map_err(|err| permanent(err.to_string()))?;
        // The code's whole life, as the email states it.
        let valid_for = (message.expires_at - message.created_at)
            .to_std()
            .unwrap_or_default();
        let valid_for = Duration::from_secs(valid_for.as_secs_f64().round() as u64);
        let mail = self
            .templates
            .activation(
                &payload.locale,
                &message.recipient,
                &payload.code,
                valid_for,
            )
            .map_err(|err| permanent(err.to_string()))?;
        let started = Instant::now();
        let sent = self
            .transport
            .send(&Outgoing {
                id: message.id,
                queued_at: message.created_at,
                from: &self.from,
                to: &message.recipient,
                subject: &mail.subject,
                body: &mail.text,
                html: &mail.html,
            })
            .await;
        crate::metrics::get().email_sent_in(started.elapsed());
        sent.map_err(|failure| failure.redacted(payload.code.as_str()))
    }

    /// Records what became of a sent message; a throttled one moves the
    /// pause of `throttle`.
    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        sent: &Sent,
        throttle: &mut Throttle,
    ) -> QueryResult<Outcome> {
        let message = &sent.message;
        let now = Utc::now();
        let attempts = u32::try_from(message.attempts).unwrap_or(u32::MAX);
        let failure = match &sent.result {
            Ok(()) => {
                throttle.relax();
                outbox::finish(conn, &[message.id], MessageState::Sent, now, None).await?;
                tracing::info!(email_id = message.id, attempts, "activation email sent");
                return Ok(Outcome::Delivered);
            }
            Err(Failure::Throttled { retry_after }) => {
                let pause = throttle.pause(*retry_after);
                outbox::throttled(conn, message.id, now + crate::duration::to_delta(pause)).await?;
                tracing::warn!(
                    email_id = message.id,
                    ?pause,
                    "email provider throttles; pausing all sends"
                );
                return Ok(Outcome::Throttled);
            }
            Err(failure) => failure,
        };
        let reason = failure.to_string();
        let error = LastError {
            status: failure.status(),
            reason: &reason,
        };
        if matches!(failure, Failure::Permanent { .. }) || attempts >= self.max_attempts {
            tracing::warn!(
                email_id = message.id,
                attempts,
                error = reason,
                "activation email is dead"
            );
            outbox::finish(conn, &[message.id], MessageState::Dead, now, Some(error)).await?;
            return Ok(Outcome::Dead);
        }
        let retry_at = now + retry_delay(attempts);
        if retry_at >= message.expires_at {
            tracing::warn!(
                email_id = message.id,
                attempts,
                error = reason,
                "activation email expired while retrying"
            );
            outbox::finish(conn, &[message.id], MessageState::Expired, now, Some(error)).await?;
            return Ok(Outcome::Expired);
        }
        tracing::warn!(email_id = message.id, attempts, error = reason, %retry_at, "activation email failed; will retry");
        outbox::retry_at(conn, message.id, retry_at, error).await?;
        Ok(Outcome::Retried)
    }
}

/// Runs a send, turning a panic in it into a logged transient failure, so
/// the message counts a failed attempt instead of vanishing.
async fn caught(
    email_id: i64,
    send: impl Future<Output = Result<(), Failure>>,
) -> Result<(), Failure> {
    AssertUnwindSafe(send)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(email_id, panic = what, "sending an email panicked");
            Err(Failure::Transient {
                status: None,
                reason: "the send panicked".into(),
            })
        })
}

/// Records `sent`, counting it in `tally`. A lost connection is returned
/// (the caller reconnects and records it then); any other error loses only
/// this outcome, logged: the message's lease brings it back.
async fn record_one(
    courier: &Courier,
    conn: &mut AsyncPgConnection,
    sent: &Sent,
    throttle: &mut Throttle,
    tally: &mut Tally,
) -> QueryResult<()> {
    match courier.record(conn, sent, throttle).await {
        Ok(outcome) => tally.count(outcome, 1),
        Err(err) if crate::db::is_connection_error(&err) => return Err(err),
        Err(err) => tracing::error!(
            email_id = sent.message.id,
            error = %err,
            "cannot record an email's outcome; it is sent again when its lease runs out"
        ),
    }
    Ok(())
}

/// Claims up to `slots` due messages. Expired ones are finished at once (and
/// counted in `tally`); the others are returned to be sent.
async fn claim(
    conn: &mut AsyncPgConnection,
    slots: usize,
    tally: &mut Tally,
) -> QueryResult<(Vec<Message>, bool)> {
    let asked = i64::try_from(slots).unwrap_or(i64::MAX);
    let now = Utc::now();
    let claimed = outbox::claim_due(conn, now, LEASE, asked).await?;
    let drained = claimed.len() < slots;
    if !claimed.is_empty() {
        tracing::debug!(claimed = claimed.len(), asked = slots, "claimed emails");
    }
    let (expired, sendable): (Vec<Message>, Vec<Message>) = claimed
        .into_iter()
        .partition(|message| message.expires_at <= now);
    if !expired.is_empty() {
        let ids: Vec<i64> = expired.iter().map(|message| message.id).collect();
        tracing::info!(emails = ?ids, "activation emails expired before they could be sent");
        outbox::finish(conn, &ids, MessageState::Expired, now, None).await?;
        tally.count(Outcome::Expired, ids.len());
    }
    Ok((sendable, drained))
}

/// Delivers every message due now, up to `window` at a time, and records
/// each outcome; returns once none is due (retries and throttled messages
/// wait for later). Tests drive delivery with it in-process, without the
/// dispatcher's thread and its timers.
pub async fn deliver_due(
    conn: &mut AsyncPgConnection,
    courier: &Courier,
    window: usize,
) -> QueryResult<Tally> {
    let mut tally = Tally::default();
    let mut throttle = Throttle::default();
    let mut in_flight = JoinSet::new();
    let mut drained = false;
    loop {
        if !drained && in_flight.len() < window {
            let (messages, last) = claim(conn, window - in_flight.len(), &mut tally).await?;
            drained = last;
            for message in messages {
                in_flight.spawn(courier.clone().send(message));
            }
        }
        match in_flight.join_next().await {
            Some(Ok(sent)) => record_one(courier, conn, &sent, &mut throttle, &mut tally).await?,
            // `send` catches panics; only an abort ends a task otherwise.
            Some(Err(err)) => tracing::error!(error = %err, "an email send task failed"),
            None if drained => return Ok(tally),
            None => {}
        }
    }
}

/// The pause that 429 answers impose on all sending.
#[derive(Debug)]
struct Throttle {
    until: Option<Instant>,
    /// The next pause when the provider gives no `Retry-After`.
    backoff: Duration,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            until: None,
            backoff: FIRST_THROTTLE,
        }
    }
}

impl Throttle {
    /// Starts (or extends) a pause: `retry_after` if the provider said, else
    /// the backoff, which doubles while throttling goes on. Returns it.
    fn pause(&mut self, retry_after: Option<Duration>) -> Duration {
        let pause = retry_after.unwrap_or(self.backoff).min(MAX_THROTTLE);
        self.backoff = (self.backoff * 2).min(MAX_THROTTLE);
        let until = Instant::now() + pause;
        self.until = Some(self.until.map_or(until, |current| current.max(until)));
        pause
    }

    /// A delivery went through: the next 429 starts from the first pause.
    fn relax(&mut self) {
        self.backoff = FIRST_THROTTLE;
    }

    /// When claiming may resume, if paused now.
    fn paused_until(&mut self) -> Option<Instant> {
        match self.until {
            Some(until) if until > Instant::now() => Some(until),
            _ => {
                self.until = None;
                None
            }
        }
    }
}

struct Worker {
    database_url: String,
    courier: Courier,
    window: usize,
    grace: Duration,
    stop: Arc<Stop>,
    /// Notified by the listener when a message is queued.
    queued: Arc<Notify>,
    in_flight: JoinSet<Sent>,
    /// Claimed ahead, up to a window's worth, so every slot that frees while
    /// a round records outcomes is refilled at once in the next, not after a
    /// round trip to the database (a quarter of the window ahead left about
    /// 8 % of the slots' time idle in the benchmark). No more than a window:
    /// then each still starts within one send's time of its claim, far inside
    /// its lease.
    ready: VecDeque<Message>,
    /// Finished sends whose outcome is not recorded yet.
    unrecorded: Vec<Sent>,
    throttle: Throttle,
    tally: Tally,
}

impl Worker {
    fn new(config: Config, stop: Arc<Stop>) -> Self {
        Self {
            database_url: config.database_url,
            courier: config.courier,
            window: config.concurrency.max(1),
            grace: config.grace,
            stop,
            queued: Arc::new(Notify::new()),
            in_flight: JoinSet::new(),
            ready: VecDeque::new(),
            unrecorded: Vec::new(),
            throttle: Throttle::default(),
            tally: Tally::default(),
        }
    }

    async fn run(mut self) {
        tracing::info!(window = self.window, "email dispatcher started");
        let listener = tokio::spawn(super::listener::listen(
            self.database_url.clone(),
            self.queued.clone(),
        ));
        let mut conn: Option<AsyncPgConnection> = None;
        let mut reconnect = FIRST_RECONNECT;
        let mut deadline: Option<Instant> = None;
        loop {
            if deadline.is_none() && self.stop.requested() {
                deadline = Some(Instant::now() + self.grace);
            }
            let stopping = deadline.is_some();
            if conn.is_none() {
                match crate::db::connect(&self.database_url).await {
                    Ok(fresh) => {
                        conn = Some(fresh);
                        reconnect = FIRST_RECONNECT;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, retry_in = ?reconnect, "email dispatcher cannot connect to the database");
                    }
                }
            }
            let mut next_look = Instant::now() + SWEEP;
            if let Some(db) = conn.as_mut() {
                match self.step(db, stopping).await {
                    Ok(look) => next_look = look.unwrap_or(next_look),
                    Err(err) => {
                        tracing::warn!(error = %err, "email dispatcher lost its database connection");
                        conn = None;
                    }
                }
            }
            if conn.is_none() {
                next_look = Instant::now() + reconnect;
                reconnect = (reconnect * 2).min(MAX_RECONNECT);
            }
            let settled = self.unrecorded.is_empty() && self.ready.is_empty();
            if stopping && self.in_flight.is_empty() && (settled || conn.is_none()) {
                break;
            }
            if let Some(deadline) = deadline {
                if Instant::now() >= deadline {
                    tracing::warn!(
                        in_flight = self.in_flight.len(),
                        "email sends still in flight at the end of the grace period; they are sent again after their lease"
                    );
                    break;
                }
                next_look = next_look.min(deadline);
            }
            tokio::select! {
                Some(joined) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    self.finished(joined);
                }
                () = self.queued.notified(), if !stopping => {}
                () = tokio::time::sleep_until(next_look.into()) => {}
                () = self.stop.wake.notified(), if !stopping => {}
            }
            // Collect every other send that finished meanwhile, so they are
            // recorded in this round.
            while let Some(Some(joined)) = self.in_flight.join_next().now_or_never() {
                self.finished(joined);
            }
        }
        listener.abort();
        self.in_flight.abort_all();
    }

    fn finished(&mut self, joined: Result<Sent, tokio::task::JoinError>) {
        match joined {
            Ok(sent) => self.unrecorded.push(sent),
            // `send` catches panics; only an abort ends a task otherwise.
            Err(err) => tracing::error!(error = %err, "an email send task failed"),
        }
    }

    /// Starts sends from the messages claimed ahead, while slots are free.
    fn fill_slots(&mut self) {
        while self.in_flight.len() < self.window {
            let Some(message) = self.ready.pop_front() else {
                return;
            };
            self.in_flight.spawn(self.courier.clone().send(message));
        }
    }

    /// One round: refill free slots, record what finished, then claim for
    /// the slots still free and a window ahead (unless stopping or paused).
    /// Returns when to look at the outbox next, if sooner than the sweep.
    async fn step(
        &mut self,
        conn: &mut AsyncPgConnection,
        stopping: bool,
    ) -> QueryResult<Option<Instant>> {
        // Refill before recording, unless what finished asks for a pause.
        let throttled = self
            .unrecorded
            .iter()
            .any(|sent| matches!(sent.result, Err(Failure::Throttled { .. })));
        if !stopping && !throttled && self.throttle.paused_until().is_none() {
            self.fill_slots();
        }
        while let Some(sent) = self.unrecorded.last() {
            record_one(
                &self.courier,
                conn,
                sent,
                &mut self.throttle,
                &mut self.tally,
            )
            .await?;
            self.unrecorded.pop();
        }
        // Recording may have started a pause (a 429) or a stop may be on:
        // what is claimed ahead goes back to the queue rather than wait out
        // its lease.
        let paused = self.throttle.paused_until();
        if (stopping || paused.is_some()) && !self.ready.is_empty() {
            let ids: Vec<i64> = self.ready.iter().map(|message| message.id).collect();
            outbox::release(conn, &ids).await?;
            self.ready.clear();
        }
        if stopping {
            return Ok(None);
        }
        if let Some(until) = paused {
            return Ok(Some(until));
        }
        // The free slots, and a window's worth ahead of them.
        let wanted = 2 * self.window - self.in_flight.len();
        if self.ready.len() < wanted {
            let (messages, _) = claim(conn, wanted - self.ready.len(), &mut self.tally).await?;
            self.ready.extend(messages);
            self.fill_slots();
        }
        if !self.ready.is_empty() {
            // Full, with more claimed: a finished send wakes the loop.
            return Ok(None);
        }
        let due = outbox::next_due_at(conn).await?.map(|due| {
            // Something due now but not claimed is another instance's; look
            // again shortly rather than spin.
            let wait = (due - Utc::now()).to_std().unwrap_or_default();
            Instant::now() + wait.clamp(Duration::from_millis(20), SWEEP)
        });
        Ok(due)
    }
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

    #[tokio::test]
    async fn a_panicking_send_is_a_failed_attempt_not_a_lost_message() {
        let result = caught(7, async { panic!("transport bug") }).await;
        assert!(
            matches!(&result, Err(Failure::Transient { status: None, reason }) if reason == "the send panicked"),
            "{result:?}"
        );
        assert_eq!(caught(7, async { Ok(()) }).await, Ok(()));
    }

    #[test]
    fn a_throttle_pause_follows_retry_after_or_doubles_from_a_second() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.pause(None), Duration::from_secs(1));
        assert_eq!(throttle.pause(None), Duration::from_secs(2));
        assert_eq!(
            throttle.pause(Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(throttle.pause(None), Duration::from_secs(8));
        assert!(throttle.paused_until().is_some());
        throttle.relax();
        assert_eq!(throttle.pause(None), Duration::from_secs(1));
        assert_eq!(
            throttle.pause(Some(Duration::from_secs(86_400))),
            MAX_THROTTLE
        );
    }
}

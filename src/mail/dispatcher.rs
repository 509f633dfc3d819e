//! The outbox dispatcher: a std thread, started by `serve`, that delivers the
//! messages queued in `email_outbox`.
//!
//! - Two lanes, each a window of sends in flight at all times: emails (up
//!   to `EMAIL_CONCURRENCY`) and events (up to [`EVENT_WINDOW`]), so a slow
//!   or hung webhook receiver never delays an email. When a send finishes,
//!   its outcome is recorded at once and a message is claimed for the free
//!   slot, so a slow answer never holds back the rest.
//! - One inbox's emails leave in the order they were queued (an email waits
//!   while an older one to its inbox is queued: `db::outbox::claim_due`).
//! - A webhook receiver that fails or hangs is backed off as a whole: the
//!   events lane pauses (1 s, doubling to 5 min) and then probes one event
//!   at a time until one goes through.
//! - Claims are `FOR UPDATE SKIP LOCKED` plus a lease (see
//!   `db::outbox::claim_due`): several `serve` instances share one outbox and
//!   each message is sent once; a message whose sender died is due again when
//!   its lease runs out (at least once across a crash).
//! - What becomes of each send (delivered, throttled, retried, dead,
//!   expired) is the courier's policy (`mail::courier`); a throttle pauses
//!   all claiming of this window.
//! - Each outcome is recorded on its own: failing to record one loses no
//!   other (unrecorded outcomes are kept and recorded after reconnecting).
//! - It wakes on `NOTIFY email_outbox` (`mail::listener`, sent when an email
//!   is queued), when the next retry is due, or at the latest every few
//!   seconds (leases of a crashed instance, lost notifications); with a
//!   webhook, every half second (events wake no one).
//! - On stop it claims nothing more, lets the sends in flight finish within
//!   the grace period, records them and ends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::db::outbox::{self, Message};
use crate::mail::courier::{Courier, Sent, Tally, Throttle, claim, record_one};

/// The longest sleep without looking at the outbox.
const SWEEP: Duration = Duration::from_secs(5);
/// The longest sleep of a dispatcher that posts events: queuing an event
/// wakes no one (docs/EMAIL.md "Events"), so it is posted within this of
/// its commit, events queued meanwhile in the same round.
const EVENT_SWEEP: Duration = Duration::from_millis(500);
/// Events in flight at most: a receiver is one endpoint, and events are
/// few next to emails.
pub const EVENT_WINDOW: usize = 4;
/// Pauses before reconnecting to the database: the first, and the longest.
const FIRST_RECONNECT: Duration = Duration::from_millis(500);
const MAX_RECONNECT: Duration = Duration::from_secs(30);

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

/// Delivers every message due now through the dispatcher's own rounds
/// (its window of `size`, claiming ahead, the throttle), without its thread,
/// listener and timers; returns once nothing is due, in flight or
/// unrecorded (retries and throttled messages wait for later). Tests and
/// benchmarks drive delivery with it in-process.
pub async fn deliver_due(
    conn: &mut AsyncPgConnection,
    courier: &Courier,
    size: usize,
) -> QueryResult<Tally> {
    let mut lanes = Lanes::new(courier.clone(), size);
    loop {
        lanes.step(conn, false).await?;
        if lanes.idle() {
            return Ok(lanes.tally());
        }
        lanes.wait_for_one().await;
    }
}

/// The two lanes, emails and events, each a [`Window`] of its own.
struct Lanes {
    emails: Window,
    events: Window,
}

impl Lanes {
    fn new(courier: Courier, size: usize) -> Self {
        Self {
            emails: Window::new(courier.clone(), size, outbox::Lane::Emails),
            events: Window::new(courier, EVENT_WINDOW.min(size), outbox::Lane::Events),
        }
    }

    fn both(&mut self) -> [&mut Window; 2] {
        [&mut self.emails, &mut self.events]
    }

    /// One round of each lane; the sooner of their next looks.
    async fn step(
        &mut self,
        conn: &mut AsyncPgConnection,
        stopping: bool,
    ) -> QueryResult<Option<Instant>> {
        let emails = self.emails.step(conn, stopping).await?;
        let events = self.events.step(conn, stopping).await?;
        Ok(match (emails, events) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    fn idle(&self) -> bool {
        [&self.emails, &self.events].iter().all(|window| {
            window.in_flight.is_empty() && window.ready.is_empty() && window.unrecorded.is_empty()
        })
    }

    /// Waits until a send of either lane finishes (at once if none is in
    /// flight), and collects every other that finished meanwhile.
    async fn wait_for_one(&mut self) {
        let Lanes { emails, events } = self;
        tokio::select! {
            Some(joined) = emails.in_flight.join_next(), if !emails.in_flight.is_empty() => {
                emails.finished(joined);
            }
            Some(joined) = events.in_flight.join_next(), if !events.in_flight.is_empty() => {
                events.finished(joined);
            }
            else => {}
        }
        self.collect_finished();
    }

    fn collect_finished(&mut self) {
        for window in self.both() {
            window.collect_finished();
        }
    }

    fn tally(&self) -> Tally {
        let (a, b) = (self.emails.tally, self.events.tally);
        Tally {
            delivered: a.delivered + b.delivered,
            retried: a.retried + b.retried,
            throttled: a.throttled + b.throttled,
            dead: a.dead + b.dead,
            expired: a.expired + b.expired,
            events: a.events + b.events,
        }
    }
}

/// The thread's loop: a connection (reconnected with backoff), the
/// listener's wake-ups, the stop and its grace period, around the
/// [`Lanes`].
struct Worker {
    database_url: String,
    grace: Duration,
    stop: Arc<Stop>,
    /// Notified by the listener when a message is queued.
    queued: Arc<Notify>,
    lanes: Lanes,
}

/// The sends of one lane in flight and the rounds that keep them so:
/// claim, send, record.
struct Window {
    courier: Courier,
    lane: outbox::Lane,
    size: usize,
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
            grace: config.grace,
            stop,
            queued: Arc::new(Notify::new()),
            lanes: Lanes::new(config.courier, config.concurrency),
        }
    }

    async fn run(mut self) {
        tracing::info!(
            window = self.lanes.emails.size,
            events = self.lanes.events.size,
            "email dispatcher started"
        );
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
            let sweep = if self.lanes.emails.courier.posts_events() {
                EVENT_SWEEP
            } else {
                SWEEP
            };
            let mut next_look = Instant::now() + sweep;
            if let Some(db) = conn.as_mut() {
                match self.lanes.step(db, stopping).await {
                    Ok(look) => next_look = look.map_or(next_look, |look| look.min(next_look)),
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
            let in_flight = self.lanes.emails.in_flight.len() + self.lanes.events.in_flight.len();
            let settled = self.lanes.idle();
            if stopping && (settled || (conn.is_none() && in_flight == 0)) {
                break;
            }
            if let Some(deadline) = deadline {
                if Instant::now() >= deadline {
                    tracing::warn!(
                        in_flight,
                        "email sends still in flight at the end of the grace period; they are sent again after their lease"
                    );
                    break;
                }
                next_look = next_look.min(deadline);
            }
            let Lanes { emails, events } = &mut self.lanes;
            tokio::select! {
                Some(joined) = emails.in_flight.join_next(), if !emails.in_flight.is_empty() => {
                    emails.finished(joined);
                }
                Some(joined) = events.in_flight.join_next(), if !events.in_flight.is_empty() => {
                    events.finished(joined);
                }
                () = self.queued.notified(), if !stopping => {}
                () = tokio::time::sleep_until(next_look.into()) => {}
                () = self.stop.wake.notified(), if !stopping => {}
            }
            self.lanes.collect_finished();
        }
        listener.abort();
        for window in self.lanes.both() {
            window.in_flight.abort_all();
        }
    }
}

impl Window {
    fn new(courier: Courier, size: usize, lane: outbox::Lane) -> Self {
        Self {
            courier,
            lane,
            size: size.max(1),
            in_flight: JoinSet::new(),
            ready: VecDeque::new(),
            unrecorded: Vec::new(),
            throttle: Throttle::default(),
            tally: Tally::default(),
        }
    }

    /// Collects every other send that finished meanwhile, so they are
    /// recorded in this round.
    fn collect_finished(&mut self) {
        while let Some(Some(joined)) = self.in_flight.join_next().now_or_never() {
            self.finished(joined);
        }
    }

    fn finished(&mut self, joined: Result<Sent, tokio::task::JoinError>) {
        match joined {
            Ok(sent) => self.unrecorded.push(sent),
            // `send` catches panics; only an abort ends a task otherwise.
            Err(err) => tracing::error!(error = %err, "an email send task failed"),
        }
    }

    /// How many sends may be in flight now: the window's size, or one at
    /// a time on the events lane while its receiver is failing (a probe).
    fn slots(&self) -> usize {
        if self.lane == outbox::Lane::Events && self.throttle.tripped() {
            1
        } else {
            self.size
        }
    }

    /// Starts sends from the messages claimed ahead, while slots are free.
    fn fill_slots(&mut self) {
        while self.in_flight.len() < self.slots() {
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
        let pausing = self.unrecorded.iter().any(Sent::pauses_lane);
        if !stopping && !pausing && self.throttle.paused_until().is_none() {
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
        let wanted = (2 * self.slots()).saturating_sub(self.in_flight.len());
        if self.ready.len() < wanted {
            let (messages, _) = claim(
                &self.courier,
                conn,
                wanted - self.ready.len(),
                &mut self.tally,
                self.lane,
            )
            .await?;
            self.ready.extend(messages);
            self.fill_slots();
        }
        if !self.ready.is_empty() {
            // Full, with more claimed: a finished send wakes the loop.
            return Ok(None);
        }
        if self.lane == outbox::Lane::Events && !self.courier.posts_events() {
            // Expired events are finished by the sweep: nothing to wait for.
            return Ok(None);
        }
        let due = outbox::next_due_at(conn, self.lane).await?.map(|due| {
            // Something due now but not claimed is another instance's; look
            // again shortly rather than spin.
            let wait = (due - Utc::now()).to_std().unwrap_or_default();
            Instant::now() + wait.clamp(Duration::from_millis(20), SWEEP)
        });
        Ok(due)
    }
}

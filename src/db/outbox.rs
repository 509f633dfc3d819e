//! The email outbox: messages written with the user/code they belong to,
//! delivered afterwards by the dispatcher (`crate::mail::dispatcher`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::deserialize::{FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::query_builder::BoxedUpdateStatement;
use diesel::serialize::{Output, ToSql};
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Purgeable;
use crate::ids::UserId;
use crate::schema::email_outbox;

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum MessageState {
    /// Waiting to be sent (possibly after a failed attempt).
    Queued,
    /// Accepted by the email API.
    Sent,
    /// Given up after `EMAIL_MAX_ATTEMPTS` failed posts.
    Dead,
    /// Its code expired before it could be sent.
    Expired,
}

impl MessageState {
    pub const ALL: [MessageState; 4] = [Self::Queued, Self::Sent, Self::Dead, Self::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Dead => "dead",
            Self::Expired => "expired",
        }
    }
}

impl ToSql<Text, Pg> for MessageState {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> diesel::serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for MessageState {
    fn from_sql(bytes: PgValue<'_>) -> diesel::deserialize::Result<Self> {
        match bytes.as_bytes() {
            b"queued" => Ok(Self::Queued),
            b"sent" => Ok(Self::Sent),
            b"dead" => Ok(Self::Dead),
            b"expired" => Ok(Self::Expired),
            other => {
                Err(format!("unknown outbox status {:?}", String::from_utf8_lossy(other)).into())
            }
        }
    }
}

/// A message claimed for sending.
#[derive(Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = email_outbox, check_for_backend(Pg))]
pub struct Message {
    pub id: i64,
    /// `None` only for an event that outlived its account (`user.deleted`).
    pub user_id: Option<UserId>,
    pub recipient: String,
    /// The sealed `seal::Payload`; `None` only if the row finished meanwhile.
    pub payload: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Attempts so far, counting the one this claim is for.
    pub attempts: i32,
    /// `email`, or `event` (a webhook; its payload is the JSON body).
    pub kind: String,
    /// An event's type (`user.activated`).
    pub event_type: Option<String>,
    /// The trace context of the request that queued it (`traces::context`),
    /// if traces were on.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl Message {
    /// Whether this is an event for the webhook rather than an email.
    pub fn is_event(&self) -> bool {
        self.kind == EVENT
    }
}

/// `kind` of an email.
pub const EMAIL: &str = "email";
/// `kind` of an event.
pub const EVENT: &str = "event";

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// A message's delivery state, without its payload.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = email_outbox, check_for_backend(Pg))]
pub struct Delivery {
    pub id: i64,
    pub status: MessageState,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The provider's status of the last failed attempt, if it answered.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
}

/// A message to queue.
pub struct NewMessage<'a> {
    /// `None` only for an event about an account erased meanwhile.
    pub user_id: Option<UserId>,
    /// The email's address; an event's subject's.
    pub recipient: &'a str,
    /// An email's sealed `seal::Payload`; an event's JSON body.
    pub payload: &'a [u8],
    pub expires_at: DateTime<Utc>,
    /// [`EMAIL`] or [`EVENT`].
    pub kind: &'a str,
    pub event_type: Option<&'a str>,
    /// The claim an email's code belongs to; `None`: the first
    /// registration's (and every event).
    pub claim_id: Option<i64>,
    /// The inbox an email goes to, as the limits fold it: one inbox's
    /// emails leave in order. `None` for an event.
    pub inbox: Option<&'a str>,
}

/// Queues a message. A trigger notifies listening dispatchers at commit.
/// With traces on, the row keeps the trace context of its insert's span
/// (a child of the request's), which its delivery continues.
///
/// On a shared connection, so it may be pipelined with another statement of
/// the transaction (one round trip for both).
///
/// Written as an insert from a `SELECT` of its values: diesel prepares an
/// `INSERT … VALUES` afresh every time (a value may be `DEFAULT`), a round
/// trip and a parse more, and the wait would hold up the statement it is
/// pipelined with; this form is prepared once per connection.
pub async fn insert(mut conn: &AsyncPgConnection, new: &NewMessage<'_>) -> QueryResult<i64> {
    use diesel::sql_types::{Bytea, Nullable};
    use tracing::Instrument;
    let span = crate::traces::spans::outbox_insert(new.kind);
    let (traceparent, tracestate) = crate::traces::context::Carrier::of(&span)
        .map_or((None, None), |carrier| {
            (Some(carrier.traceparent), carrier.tracestate)
        });
    let values = diesel::select((
        new.user_id.map(|id| id.0).into_sql::<Nullable<BigInt>>(),
        new.recipient.into_sql::<Text>(),
        Some(new.payload).into_sql::<Nullable<Bytea>>(),
        new.expires_at.into_sql::<Timestamptz>(),
        new.kind.into_sql::<Text>(),
        new.event_type.into_sql::<Nullable<Text>>(),
        new.claim_id.into_sql::<Nullable<BigInt>>(),
        new.inbox.into_sql::<Nullable<Text>>(),
        traceparent.into_sql::<Nullable<Text>>(),
        tracestate.into_sql::<Nullable<Text>>(),
    ));
    diesel::insert_into(email_outbox::table)
        .values(values)
        .into_columns((
            email_outbox::user_id,
            email_outbox::recipient,
            email_outbox::payload,
            email_outbox::expires_at,
            email_outbox::kind,
            email_outbox::event_type,
            email_outbox::claim_id,
            email_outbox::inbox,
            email_outbox::traceparent,
            email_outbox::tracestate,
        ))
        .returning(email_outbox::id)
        .get_result(&mut conn)
        .instrument(span)
        .await
}

/// Whether an event about `user` was delivered or is queued: its receiver
/// knows of the account, or will.
pub async fn has_told(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        email_outbox::table
            .filter(email_outbox::user_id.eq(user))
            .filter(email_outbox::kind.eq(EVENT))
            .filter(email_outbox::status.eq_any([MessageState::Queued, MessageState::Sent])),
    ))
    .get_result(conn)
    .await
}

/// Finishes the user's queued messages as expired: a new code supersedes
/// theirs, so they could only deliver a code that no longer works. Runs in
/// the transaction that issues the new code.
pub async fn supersede_queued(
    conn: &mut AsyncPgConnection,
    user: UserId,
    claim: Option<i64>,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    let emails = diesel::update(email_outbox::table)
        .filter(email_outbox::user_id.eq(user))
        .filter(email_outbox::claim_id.is_not_distinct_from(claim))
        .filter(email_outbox::kind.eq(EMAIL))
        .into_boxed();
    expire_queued(conn, emails, now, "superseded by a newer code").await
}

/// Finishes the queued emails of ended claims `claims` as expired: their
/// codes open nothing now.
pub async fn supersede_claims(
    conn: &mut AsyncPgConnection,
    claims: &[i64],
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    let emails = diesel::update(email_outbox::table)
        .filter(email_outbox::claim_id.eq_any(claims))
        .into_boxed();
    expire_queued(conn, emails, now, "its claim ended").await
}

/// Finishes the messages `update` picks that are still queued as expired,
/// for `reason`; their payloads go.
async fn expire_queued(
    conn: &mut AsyncPgConnection,
    update: BoxedUpdateStatement<'_, Pg, email_outbox::table>,
    now: DateTime<Utc>,
    reason: &str,
) -> QueryResult<usize> {
    update
        .filter(email_outbox::status.eq(MessageState::Queued))
        .set((
            email_outbox::status.eq(MessageState::Expired),
            email_outbox::finished_at.eq(now),
            email_outbox::payload.eq(None::<Vec<u8>>),
            email_outbox::last_error.eq(reason),
        ))
        .execute(conn)
        .await
}

/// The dispatcher's lanes: emails and events are claimed and sent apart,
/// so a slow or hung webhook receiver delays no email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Emails,
    Events,
}

/// Claims up to `limit` due messages of `lane` for this sender: each claim
/// counts an attempt and pushes the message's next attempt `lease` ahead,
/// so if this process dies mid-send the message becomes due again when the
/// lease runs out. `FOR UPDATE SKIP LOCKED` lets several dispatchers claim
/// concurrently without blocking on, or double-claiming, each other's rows.
/// An email is claimed only when no older email to its inbox is still
/// queued: one inbox's emails leave in order. Events are claimed only
/// `with_events` (by a sender that has somewhere to post them), or once
/// expired (to be finished as such, so that none is left queued for ever
/// when no instance has a webhook any more).
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    lease: Duration,
    limit: i64,
    lane: Lane,
    with_events: bool,
) -> QueryResult<Vec<Message>> {
    let due = match lane {
        Lane::Emails => {
            "m.kind = 'email' AND NOT EXISTS (SELECT 1 FROM email_outbox o \
               WHERE o.kind = 'email' AND o.status = 'queued' AND o.inbox = m.inbox \
                 AND o.id < m.id)"
        }
        Lane::Events => "m.kind = 'event' AND ($4 OR m.expires_at <= $1)",
    };
    diesel::sql_query(format!(
        "UPDATE email_outbox SET attempts = attempts + 1, next_attempt_at = $2 \
         WHERE id IN (SELECT m.id FROM email_outbox m \
                      WHERE m.status = 'queued' AND m.next_attempt_at <= $1 AND {due} \
                      ORDER BY m.next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING id, user_id, recipient, payload, created_at, expires_at, attempts, kind, \
                   event_type, traceparent, tracestate"
    ))
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(now + crate::duration::to_delta(lease))
    .bind::<BigInt, _>(limit)
    .bind::<diesel::sql_types::Bool, _>(with_events)
    .load(conn)
    .await
}

/// Why the last attempt failed: the provider's status, if it answered, and
/// a short reason.
#[derive(Debug, Clone, Copy)]
pub struct LastError<'a> {
    pub status: Option<u16>,
    pub reason: &'a str,
}

/// Finishes messages as sent, dead or expired. Their payloads are cleared,
/// so not even a sealed code rests in the database.
pub async fn finish(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
    state: MessageState,
    now: DateTime<Utc>,
    error: Option<LastError<'_>>,
) -> QueryResult<()> {
    debug_assert!(state != MessageState::Queued);
    let queued = email_outbox::table
        .filter(email_outbox::id.eq_any(ids))
        .filter(email_outbox::status.eq(MessageState::Queued));
    diesel::update(queued)
        .set((
            email_outbox::status.eq(state),
            email_outbox::finished_at.eq(now),
            email_outbox::payload.eq(None::<Vec<u8>>),
            email_outbox::last_status.eq(error.and_then(|e| e.status).map(i32::from)),
            email_outbox::last_error.eq(error.map(|e| e.reason)),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Schedules another attempt at `at` after a failed one.
pub async fn retry_at(
    conn: &mut AsyncPgConnection,
    id: i64,
    at: DateTime<Utc>,
    error: LastError<'_>,
) -> QueryResult<()> {
    let queued = email_outbox::table
        .find(id)
        .filter(email_outbox::status.eq(MessageState::Queued));
    diesel::update(queued)
        .set((
            email_outbox::next_attempt_at.eq(at),
            email_outbox::last_status.eq(error.status.map(i32::from)),
            email_outbox::last_error.eq(error.reason),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Puts a message the provider throttled back in the queue, due at `at`.
/// A throttled send was not an attempt: the claim's count is undone.
pub async fn throttled(
    conn: &mut AsyncPgConnection,
    id: i64,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    let queued = email_outbox::table
        .find(id)
        .filter(email_outbox::status.eq(MessageState::Queued));
    diesel::update(queued)
        .set((
            email_outbox::next_attempt_at.eq(at),
            email_outbox::attempts.eq(email_outbox::attempts - 1),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Gives claimed messages back unsent (a stop, a pause): due now again, the
/// claim's count undone.
pub async fn release(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<()> {
    let queued = email_outbox::table
        .filter(email_outbox::id.eq_any(ids))
        .filter(email_outbox::status.eq(MessageState::Queued));
    diesel::update(queued)
        .set((
            email_outbox::next_attempt_at.eq(diesel::dsl::now),
            email_outbox::attempts.eq(email_outbox::attempts - 1),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// When the earliest queued message of `lane` is due, if any is queued.
pub async fn next_due_at(
    conn: &mut AsyncPgConnection,
    lane: Lane,
) -> QueryResult<Option<DateTime<Utc>>> {
    email_outbox::table
        .filter(email_outbox::status.eq(MessageState::Queued))
        .filter(email_outbox::kind.eq(match lane {
            Lane::Emails => EMAIL,
            Lane::Events => EVENT,
        }))
        .select(diesel::dsl::min(email_outbox::next_attempt_at))
        .get_result(conn)
        .await
}

/// The messages of `kind` ([`EMAIL`] or [`EVENT`]) of `user`, oldest
/// first, each with its event type, for support.
pub async fn for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
    kind: &str,
) -> QueryResult<Vec<(Option<String>, Delivery)>> {
    email_outbox::table
        .filter(email_outbox::user_id.eq(user))
        .filter(email_outbox::kind.eq(kind))
        .order(email_outbox::id.asc())
        .select((email_outbox::event_type, Delivery::as_select()))
        .load(conn)
        .await
}

/// Messages finished (sent, dead or expired) before the cutoff.
pub const FINISHED: Purgeable = Purgeable {
    table: "email_outbox",
    condition: "status <> 'queued' AND finished_at < $1",
};

/// How many messages are in each of `states`, and when the oldest queued
/// one was queued: what the outbox gauges show. Queued, dead and expired
/// messages are few, and counted through an index (a partial one for
/// queued, `email_outbox_status_created_at_idx` for the others), whose first
/// queued entry is the oldest; sent ones are as many as the retention
/// keeps (PostgreSQL scans for them: 50 ms for 500,000), so the caller
/// counts those less often.
pub async fn summary(
    conn: &mut AsyncPgConnection,
    states: &[MessageState],
) -> QueryResult<Summary> {
    let mut counts = Vec::with_capacity(states.len());
    for &state in states {
        let count: i64 = email_outbox::table
            .filter(email_outbox::kind.eq(EMAIL))
            .filter(email_outbox::status.eq(state))
            .count()
            .get_result(conn)
            .await?;
        counts.push((state, count));
    }
    let oldest_queued = email_outbox::table
        .filter(email_outbox::kind.eq(EMAIL))
        .filter(email_outbox::status.eq(MessageState::Queued))
        .select(diesel::dsl::min(email_outbox::created_at))
        .get_result(conn)
        .await?;
    Ok(Summary {
        counts,
        oldest_queued,
    })
}

/// See [`summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Messages per state counted.
    pub counts: Vec<(MessageState, i64)>,
    pub oldest_queued: Option<DateTime<Utc>>,
}

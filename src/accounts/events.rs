//! The events the workflows queue for the webhook (`mail::webhook` posts
//! them): a row of the outbox in the caller's transaction, its body the
//! event's JSON, which holds no secret.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;

use crate::db::outbox;
use crate::db::users::User;
use crate::ids::UserId;

/// The events queued for the webhook.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Events {
    pub(super) activated: bool,
    pub(super) registered: bool,
}

pub(super) const ACTIVATED: &str = "user.activated";
pub(super) const REGISTERED: &str = "user.registered";
pub(super) const DELETED: &str = "user.deleted";

/// How long an event waits for the webhook before it expires.
const EVENT_LIFE: Duration = Duration::from_secs(7 * 86_400);

/// Queues event `kind` about `user` (activated at `activated_at`, for
/// `user.activated`) in the caller's transaction. Its body holds no secret:
/// no password, hash or code.
pub(super) async fn queue_event(
    conn: &AsyncPgConnection,
    kind: &str,
    user: &User,
    activated_at: Option<DateTime<Utc>>,
) -> diesel::QueryResult<()> {
    use chrono::SecondsFormat::Millis;
    let now = Utc::now();
    let mut data = serde_json::json!({
        "id": user.id.0,
        "email": user.email.as_str(),
        "locale": user.locale,
        "registered_at": user.created_at.to_rfc3339_opts(Millis, true),
    });
    if let Some(at) = activated_at {
        data["activated_at"] = at.to_rfc3339_opts(Millis, true).into();
    }
    let body = serde_json::json!({
        "type": kind,
        "timestamp": now.to_rfc3339_opts(Millis, true),
        "data": data,
    });
    outbox::insert(
        conn,
        &outbox::NewMessage {
            user_id: Some(user.id),
            recipient: user.email.as_str(),
            payload: body.to_string().as_bytes(),
            expires_at: now + crate::duration::to_delta(EVENT_LIFE),
            kind: outbox::EVENT,
            event_type: Some(kind),
            claim_id: None,
            inbox: None,
        },
    )
    .await
    .map(drop)
}

/// Queues `user.deleted` for the account `id`, erased at `deleted_at`, in
/// the caller's transaction: the receiver was told of the account, so it
/// learns that it is gone. It names the account by the id its first event
/// gave, nothing else: the row belongs to no account any more.
pub(super) async fn queue_deleted(
    conn: &AsyncPgConnection,
    id: UserId,
    deleted_at: DateTime<Utc>,
) -> diesel::QueryResult<()> {
    use chrono::SecondsFormat::Millis;
    let body = serde_json::json!({
        "type": DELETED,
        "timestamp": deleted_at.to_rfc3339_opts(Millis, true),
        "data": {"id": id.0, "deleted_at": deleted_at.to_rfc3339_opts(Millis, true)},
    });
    outbox::insert(
        conn,
        &outbox::NewMessage {
            user_id: None,
            recipient: "",
            payload: body.to_string().as_bytes(),
            expires_at: deleted_at + crate::duration::to_delta(EVENT_LIFE),
            kind: outbox::EVENT,
            event_type: Some(DELETED),
            claim_id: None,
            inbox: None,
        },
    )
    .await
    .map(drop)
}

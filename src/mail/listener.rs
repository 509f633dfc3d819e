//! The dispatcher's wake-up call: `LISTEN email_outbox` on a connection of
//! its own. A trigger sends `NOTIFY email_outbox` when any process queues an
//! email (not an event: see `mail::dispatcher`; delivered at commit, so the row is visible by then); each one
//! wakes the dispatcher at once. If the connection fails, the listener
//! reconnects with backoff and wakes the dispatcher once more, since
//! notifications sent meanwhile are lost. The dispatcher's slow sweep stays
//! as the safety net.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::RunQueryDsl;
use futures_util::StreamExt;
use tokio::sync::Notify;

/// The first pause before reconnecting; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Listens until the task is dropped or aborted, calling `wake.notify_one()`
/// for each notification (and after each reconnection).
pub async fn listen(database_url: String, wake: Arc<Notify>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match listen_once(&database_url, &wake).await {
            Ok(()) => {
                tracing::warn!("email outbox listener: the connection closed; reconnecting");
                backoff = FIRST_BACKOFF;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "email outbox listener: connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One connection's life: connect, LISTEN, wake for each notification until
/// the stream ends (`Ok`) or fails.
async fn listen_once(database_url: &str, wake: &Notify) -> anyhow::Result<()> {
    let mut conn = crate::db::connect(database_url).await?;
    diesel::sql_query("LISTEN email_outbox")
        .execute(&mut conn)
        .await?;
    // Whatever was queued while no one listened is due now.
    wake.notify_one();
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    while let Some(notification) = notifications.next().await {
        notification?;
        wake.notify_one();
    }
    Ok(())
}

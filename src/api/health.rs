//! Health probes: `/health/live` (the process answers) and `/health/check`
//! (PostgreSQL and Redis answer too).

use std::fmt::Display;
use std::time::Duration;

use rocket::http::Status;
use rocket::serde::json::{Json, Value, json};
use rocket::{State, get};

use crate::accounts::Accounts;

/// How long each dependency may take to answer a health check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process is running", example = json!({"status": "ok"}))))]
#[get("/health/live")]
pub fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Answers whether `check` succeeds within [`CHECK_TIMEOUT`], logging why
/// not.
async fn probe<E: Display>(name: &str, check: impl Future<Output = Result<(), E>>) -> bool {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "health check: {name} is unavailable");
            false
        }
        Err(_) => {
            tracing::warn!("health check: {name} timed out");
            false
        }
    }
}

/// Readiness: 200 when PostgreSQL and Redis answer, else 503 naming what is
/// down.
#[utoipa::path(get, path = "/health/check", tag = "health",
    responses(
        (status = 200, description = "PostgreSQL and Redis answer: exactly this body, as the original service's",
            example = json!({"status": "ok"})),
        (status = 503, description = "A dependency is down",
            example = json!({"status": "unavailable", "detail": "redis is unavailable", "postgres": "ok", "redis": "unavailable"})),
    ))]
#[get("/health/check")]
pub async fn check(accounts: &State<Accounts>) -> (Status, Json<Value>) {
    let (postgres, redis) = tokio::join!(
        probe("postgres", accounts.database_ready()),
        probe("redis", accounts.redis_ready()),
    );
    let state = |up: bool| if up { "ok" } else { "unavailable" };
    if postgres && redis {
        return (Status::Ok, Json(json!({ "status": "ok" })));
    }
    let down: Vec<&str> = [("postgres", postgres), ("redis", redis)]
        .into_iter()
        .filter(|(_, up)| !up)
        .map(|(name, _)| name)
        .collect();
    let verb = if down.len() == 1 { "is" } else { "are" };
    (
        Status::ServiceUnavailable,
        Json(json!({
            "status": "unavailable",
            "detail": format!("{} {verb} unavailable", down.join(" and ")),
            "postgres": state(postgres),
            "redis": state(redis),
        })),
    )
}

//! The spans the work makes, named in one place so that each kind reads
//! the same wherever it is made, with attributes from OpenTelemetry's
//! semantic conventions where they have one (`db.system`,
//! `db.operation.name`) and `activator.*` where they do not.
//!
//! Each says what kind of work it was and how it went, never whom it was
//! for: no address, client, key name, password, code or key.
//!
//! Numbers are recorded as `i64` (OpenTelemetry's integer); tracing's
//! unsigned ones would arrive as text.
//!
//! Off, each of these is a disabled span, made at the cost of a check.

use tracing::Span;
use tracing::field::Empty;

/// A limit check (`limit register_per_ip`); its outcome is recorded by
/// [`limit_decided`].
pub fn limit(check: &'static str) -> Span {
    tracing::info_span!(
        "limit",
        otel.name = %format_args!("limit {check}"),
        activator.limit = check,
        activator.limit.outcome = Empty,
        activator.limit.refused_by = Empty,
    )
}

/// Records a limit check's outcome: allowed (`None`), or refused by the
/// limit named (as `activator_rate_limited_total` names it).
pub fn limit_decided(span: &Span, refused_by: Option<&'static str>) {
    match refused_by {
        None => {
            span.record("activator.limit.outcome", "allowed");
        }
        Some(limit) => {
            span.record("activator.limit.outcome", "refused");
            span.record("activator.limit.refused_by", limit);
        }
    }
}

/// Records that a limit could not be checked (its store failed).
pub fn limit_failed(span: &Span) {
    span.record("activator.limit.outcome", "unavailable");
}

/// The wait for a turn at the password hasher.
pub fn password_wait() -> Span {
    tracing::info_span!("password wait")
}

/// One bcrypt computation: `hash` (a new password) or `verify`.
pub fn password_hash(work: &'static str) -> Span {
    tracing::info_span!("password hash", activator.password.work = work)
}

/// One PostgreSQL transaction, of workflow step `step`.
pub fn transaction(step: &'static str) -> Span {
    tracing::info_span!(
        "postgresql transaction",
        otel.kind = "client",
        db.system = "postgresql",
        activator.transaction = step,
    )
}

/// PostgreSQL reads outside a transaction (the connection's wait
/// included), of `what` (`account`: an address's account and claims).
pub fn read(what: &'static str) -> Span {
    tracing::info_span!(
        "postgresql read",
        otel.kind = "client",
        db.system = "postgresql",
        activator.read = what,
    )
}

/// One Redis round trip of `command` (`EVALSHA`, `PING`, …).
pub fn redis(command: &str) -> Span {
    tracing::info_span!(
        "redis",
        otel.name = %format_args!("redis {command}"),
        otel.kind = "client",
        db.system = "redis",
        db.operation.name = command,
    )
}

/// One Redis round trip of a pipeline of `commands`.
pub fn redis_pipeline(commands: usize) -> Span {
    tracing::info_span!(
        "redis PIPELINE",
        otel.kind = "client",
        db.system = "redis",
        db.operation.name = "PIPELINE",
        db.operation.batch.size = i64::try_from(commands).unwrap_or(i64::MAX),
    )
}

/// A message put into the outbox, of `kind` (`email` or `event`): its
/// delivery continues the trace from here.
pub fn outbox_insert(kind: &str) -> Span {
    tracing::info_span!(
        "outbox insert",
        otel.kind = "producer",
        activator.outbox.kind = kind,
    )
}

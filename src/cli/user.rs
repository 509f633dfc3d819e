//! `activator user resend|unlock|show|delete EMAIL`: support actions on one
//! account.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::accounts::{self, AccountError, Accounts, Unlocked};
use crate::address::Email;
use crate::db::{self, Pool, activation_codes, outbox};
use crate::duration::approximate;
use crate::limits::{Limiter, LockState};
use crate::seal::Sealer;
use crate::settings::{Environment, Settings};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Issue a new code (superseding older ones) and queue its email,
    /// regardless of the user's resend limits.
    Resend {
        #[arg(value_parser = super::email_arg)]
        email: Email,
    },
    /// Clear the activation lockout and failure counters.
    Unlock {
        #[arg(value_parser = super::email_arg)]
        email: Email,
        /// Also clear the per-minute and daily resend counters.
        #[arg(long)]
        resend_limits: bool,
    },
    /// Erase the account, its codes, its queued and sent emails and its
    /// counters (no prompt: for scripts, e.g. an erasure request).
    Delete {
        #[arg(value_parser = super::email_arg)]
        email: Email,
    },
    /// Show account, lockout, code and email-delivery state (never the code).
    Show {
        #[arg(value_parser = super::email_arg)]
        email: Email,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: Command, env: &Environment) -> anyhow::Result<()> {
    let mut settings = Settings::from_source(env)?;
    // One command needs a connection or two, not a pool of them.
    settings.database.pool_size = 2;
    super::block_on(async move {
        match command {
            Command::Resend { email } => resend(&workflows(&settings).await?, &email).await,
            Command::Unlock {
                email,
                resend_limits,
            } => unlock(&workflows(&settings).await?, &email, resend_limits).await,
            Command::Delete { email } => delete(&workflows(&settings).await?, &email).await,
            Command::Show { email, json } => {
                let pool =
                    db::pool(&settings.database).context("cannot set up the database pool")?;
                let sealer = Sealer::new(&settings.secret_key)
                    .with_fallbacks(&settings.secret_key_fallbacks);
                let names = accounts::key_names(&pool, &sealer).await?;
                let limiter = Limiter::connect(&settings, names).await?;
                show(&pool, &limiter, settings.pending_ttl, &email, json).await
            }
        }
    })?
}

/// The account workflows, for the commands that run one.
async fn workflows(settings: &Settings) -> anyhow::Result<Accounts> {
    Accounts::build(settings).await
}

/// Phrases a workflow refusal for an operator.
fn explain(err: AccountError, email: &Email) -> anyhow::Error {
    match err {
        AccountError::UnknownUser(_) => anyhow::anyhow!("no account for {email}"),
        AccountError::AlreadyActive => anyhow::anyhow!("the account {email} is already active"),
        AccountError::Pool(err) => {
            anyhow::anyhow!("cannot reach the database (DATABASE_URL): {err}")
        }
        AccountError::Redis(err) => anyhow::anyhow!("cannot reach Redis (REDIS_URL): {err}"),
        other => anyhow::Error::new(other),
    }
}

async fn resend(accounts: &Accounts, email: &Email) -> anyhow::Result<()> {
    let user = accounts
        .find_user(email)
        .await
        .map_err(|err| explain(err, email))?;
    accounts
        .reissue(&user)
        .await
        .map_err(|err| explain(err, email))?;
    println!(
        "queued a new activation code for {email}, valid for {}s; a running `activator serve` sends it",
        accounts.code_ttl().as_secs()
    );
    Ok(())
}

async fn unlock(accounts: &Accounts, email: &Email, resend_limits: bool) -> anyhow::Result<()> {
    let Unlocked { cleared, budget } = accounts
        .unlock(email, resend_limits)
        .await
        .map_err(|err| explain(err, email))?;
    let mut what = Vec::new();
    if cleared.lock {
        what.push("the activation lockout".to_owned());
    }
    if cleared.failures {
        what.push("the failure counters".to_owned());
    }
    if budget > 0 {
        what.push(format!("{budget} failed activation(s) from the budget"));
    }
    if cleared.resend_limits {
        what.push("the resend counters".to_owned());
    }
    if what.is_empty() {
        println!("{email} had nothing to clear");
    } else {
        println!("cleared {} for {email}", what.join(", "));
    }
    Ok(())
}

async fn delete(accounts: &Accounts, email: &Email) -> anyhow::Result<()> {
    let deleted = accounts
        .delete(email)
        .await
        .map_err(|err| explain(err, email))?;
    println!(
        "deleted the account {email}, {} code(s), {} email(s) and its counters{}",
        deleted.codes,
        deleted.emails,
        if deleted.told {
            "; a user.deleted event is queued for the webhook"
        } else {
            ""
        }
    );
    Ok(())
}

/// Everything support may want to know about an account, secrets excluded.
#[derive(Debug, Serialize)]
struct Report {
    email: String,
    state: &'static str,
    /// The language of its emails; none: `DEFAULT_LOCALE`'s.
    language: Option<String>,
    created_at: DateTime<Utc>,
    activated_at: Option<DateTime<Utc>>,
    /// When a pending registration expires (the address can then be
    /// registered afresh); none for an active account or without expiry.
    pending_until: Option<DateTime<Utc>>,
    locked: bool,
    lock_seconds_left: Option<u64>,
    attempts_in_window: u32,
    auth_failures_in_window: u32,
    /// Resends of the first registration in the current day's window.
    resends_today: u32,
    /// Failed activations left of the pending account's lifetime budget.
    activation_failures_left: Option<u32>,
    code: Option<CodeReport>,
    last_email: Option<EmailReport>,
    /// The account's webhook events, oldest first.
    events: Vec<EventReport>,
    /// Later registrations' claims to the pending address, oldest first;
    /// of an active address, the decoys of hidden registrations.
    claims: Vec<ClaimReport>,
}

#[derive(Debug, Serialize)]
struct ClaimReport {
    id: i64,
    /// A claim of an active account: recorded by a registration with
    /// `REGISTRATION_DISCLOSURE=hidden` and another password, it answers
    /// as a pending registrant's would and activates nothing.
    decoy: bool,
    created_at: DateTime<Utc>,
    language: Option<String>,
    activation_failures_left: u32,
    code: Option<CodeReport>,
}

#[derive(Debug, Serialize)]
struct EventReport {
    #[serde(rename = "type")]
    kind: String,
    #[serde(flatten)]
    delivery: EmailReport,
}

#[derive(Debug, Serialize)]
struct CodeReport {
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    expired: bool,
}

impl CodeReport {
    fn of(code: &activation_codes::StoredCode, now: DateTime<Utc>) -> Self {
        Self {
            issued_at: code.created_at,
            expires_at: code.expires_at,
            expired: code.expires_at <= now,
        }
    }
}

#[derive(Debug, Serialize)]
struct EmailReport {
    status: &'static str,
    queued_at: DateTime<Utc>,
    attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

impl EmailReport {
    fn of(delivery: outbox::Delivery) -> Self {
        Self {
            status: delivery.status.as_str(),
            queued_at: delivery.created_at,
            attempts: delivery.attempts,
            next_attempt_at: (delivery.status == outbox::MessageState::Queued)
                .then_some(delivery.next_attempt_at),
            finished_at: delivery.finished_at,
            last_error: delivery.last_error,
        }
    }

    /// One line: the state, attempts, when, and why it failed last.
    fn describe(&self, now: DateTime<Utc>) -> String {
        let mut text = format!(
            "{} after {} attempt(s), queued {}",
            self.status,
            self.attempts,
            ago_or_in(self.queued_at, now)
        );
        if let Some(at) = self.next_attempt_at {
            text.push_str(&format!("; next attempt {}", ago_or_in(at, now)));
        }
        if let Some(error) = &self.last_error {
            text.push_str(&format!("; last error: {error}"));
        }
        text
    }
}

async fn show(
    pool: &Pool,
    limiter: &Limiter,
    pending_ttl: Option<Duration>,
    email: &Email,
    json: bool,
) -> anyhow::Result<()> {
    let user = accounts::find_user(pool, email)
        .await
        .map_err(|err| explain(err, email))?;
    let lock: LockState = limiter
        .lock_state(email)
        .await
        .map_err(|err| explain(err.into(), email))?;
    let mut conn = pool
        .get()
        .await
        .context("cannot reach the database (DATABASE_URL)")?;
    let code = activation_codes::find_live(&mut conn, user.id, None).await?;
    let max_failures = limiter.policy().activation_max_failures;
    let mut claims = Vec::new();
    for claim in crate::db::claims::of_user(&mut conn, user.id).await? {
        let code = activation_codes::find_live(&mut conn, user.id, Some(claim.id)).await?;
        claims.push(ClaimReport {
            id: claim.id,
            decoy: user.is_active,
            created_at: claim.created_at,
            language: claim.locale,
            activation_failures_left: max_failures
                .saturating_sub(u32::try_from(claim.failed_activations).unwrap_or(0)),
            code: code.map(|code| CodeReport::of(&code, Utc::now())),
        });
    }
    let delivery = outbox::for_user(&mut conn, user.id, outbox::EMAIL)
        .await?
        .pop()
        .map(|(_, delivery)| delivery);
    let events = outbox::for_user(&mut conn, user.id, outbox::EVENT).await?;
    let now = Utc::now();
    let report = Report {
        email: user.email.to_string(),
        state: if user.is_active { "active" } else { "pending" },
        language: user.locale.clone(),
        created_at: user.created_at,
        activated_at: user.activated_at,
        pending_until: pending_ttl
            .filter(|_| !user.is_active)
            .map(|ttl| user.created_at + crate::duration::to_delta(ttl)),
        locked: lock.locked_for.is_some(),
        lock_seconds_left: lock.locked_for.map(|left| left.as_secs().max(1)),
        attempts_in_window: lock.attempts,
        auth_failures_in_window: lock.auth_failures,
        resends_today: lock.resends_today,
        activation_failures_left: (!user.is_active).then(|| {
            let spent = u32::try_from(user.failed_activations).unwrap_or(0);
            limiter
                .policy()
                .activation_max_failures
                .saturating_sub(spent)
        }),
        code: code.map(|code| CodeReport::of(&code, now)),
        last_email: delivery.map(EmailReport::of),
        events: events
            .into_iter()
            .map(|(kind, delivery)| EventReport {
                kind: kind.unwrap_or_default(),
                delivery: EmailReport::of(delivery),
            })
            .collect(),
        claims,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, now));
    }
    Ok(())
}

/// `at` with how long ago, or in how long, it is from `now`.
fn ago_or_in(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (at - now).num_seconds();
    let distance = approximate(Duration::from_secs(seconds.unsigned_abs()));
    let at = at.format("%Y-%m-%d %H:%M:%S UTC");
    if seconds > 0 {
        format!("{at} (in {distance})")
    } else {
        format!("{at} ({distance} ago)")
    }
}

fn render(report: &Report, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<12}{value}\n"));
    line("email", report.email.clone());
    line("account", report.state.to_owned());
    line(
        "language",
        report
            .language
            .clone()
            .unwrap_or_else(|| "DEFAULT_LOCALE's".to_owned()),
    );
    line("created", ago_or_in(report.created_at, now));
    if let Some(at) = report.activated_at {
        line("activated", ago_or_in(at, now));
    }
    if let Some(at) = report.pending_until {
        let verb = if at > now { "expires" } else { "expired" };
        line("pending", format!("{verb} {}", ago_or_in(at, now)));
    }
    if let Some(left) = report.activation_failures_left {
        let spent = if left == 0 {
            ": spent, activation refused until `user unlock`"
        } else {
            ""
        };
        line("budget", format!("{left} failed activation(s) left{spent}"));
    }
    line(
        "sign-ins",
        format!(
            "{} failed in the current window",
            report.auth_failures_in_window
        ),
    );
    line(
        "lockout",
        match report.lock_seconds_left {
            Some(left) => format!("locked, {} left", approximate(Duration::from_secs(left))),
            None => format!(
                "not locked ({} attempt(s) in the current window)",
                report.attempts_in_window
            ),
        },
    );
    line(
        "resends",
        format!("{} in the current day's window", report.resends_today),
    );
    let describe = |code: &Option<CodeReport>| match code {
        None => "none outstanding".to_owned(),
        Some(code) if code.expired => format!("expired {}", ago_or_in(code.expires_at, now)),
        Some(code) => format!("valid until {}", ago_or_in(code.expires_at, now)),
    };
    line("code", describe(&report.code));
    for claim in &report.claims {
        line(
            if claim.decoy { "decoy claim" } else { "claim" },
            format!(
                "#{} made {}; {} failed activation(s) left; code {}",
                claim.id,
                ago_or_in(claim.created_at, now),
                claim.activation_failures_left,
                describe(&claim.code)
            ),
        );
    }
    line(
        "last email",
        report
            .last_email
            .as_ref()
            .map_or_else(|| "none".to_owned(), |email| email.describe(now)),
    );
    for event in &report.events {
        line(
            "event",
            format!("{} {}", event.kind, event.delivery.describe(now)),
        );
    }
    out
}

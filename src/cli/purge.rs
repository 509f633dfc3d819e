//! `activator purge`: the cron clean-up.
//!
//! Deletes spent codes (used, superseded or expired), sent/dead/expired
//! emails older than the retention, and, only when asked, accounts never
//! activated. Deletes in batches, each its own short transaction, so a busy
//! `serve` never waits long on its locks; rows another purge has locked are
//! skipped, so purges on several hosts at once split the work.

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use serde::Serialize;

use crate::db::{self, codes, outbox, users};
use crate::settings::{DatabaseSettings, Environment};

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Count what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Keep finished emails this many days.
    #[arg(long, default_value_t = 7, value_name = "DAYS")]
    retention_days: u32,
    /// Also delete accounts never activated, created more than DAYS ago.
    #[arg(long, value_name = "DAYS")]
    unactivated_older_than: Option<u32>,
    /// Rows deleted per statement.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    batch_size: i64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    dry_run: bool,
    codes: u64,
    emails: u64,
    accounts: u64,
}

fn days(n: u32) -> TimeDelta {
    TimeDelta::days(i64::from(n))
}

/// Runs `delete` until it deletes less than a full batch.
async fn in_batches<F>(batch: i64, mut delete: F) -> diesel::QueryResult<u64>
where
    F: AsyncFnMut() -> diesel::QueryResult<usize>,
{
    let mut total = 0;
    loop {
        let deleted = delete().await?;
        total += deleted as u64;
        if i64::try_from(deleted).unwrap_or(i64::MAX) < batch {
            return Ok(total);
        }
    }
}

pub fn run(opts: Opts, env: &Environment) -> anyhow::Result<()> {
    let settings = DatabaseSettings::from_source(env)?;
    let counts = super::block_on(async {
        let mut conn = db::connect(&settings.url)
            .await
            .context("cannot connect to the database (DATABASE_URL)")?;
        let now = Utc::now();
        let email_cutoff = now - days(opts.retention_days);
        let account_cutoff = opts.unactivated_older_than.map(|n| now - days(n));
        let batch = opts.batch_size;
        let conn = &mut conn;
        let mut counts = Counts {
            dry_run: opts.dry_run,
            ..Counts::default()
        };
        if opts.dry_run {
            counts.codes = codes::count_spent(conn, now).await?.unsigned_abs();
            counts.emails = outbox::count_finished_before(conn, email_cutoff)
                .await?
                .unsigned_abs();
            if let Some(cutoff) = account_cutoff {
                counts.accounts = users::count_pending_created_before(conn, cutoff)
                    .await?
                    .unsigned_abs();
            }
        } else {
            counts.codes =
                in_batches(batch, async || codes::delete_spent(conn, now, batch).await).await?;
            counts.emails = in_batches(batch, async || {
                outbox::delete_finished_before(conn, email_cutoff, batch).await
            })
            .await?;
            if let Some(cutoff) = account_cutoff {
                counts.accounts = in_batches(batch, async || {
                    users::delete_pending_created_before(conn, cutoff, batch).await
                })
                .await?;
            }
        }
        anyhow::Ok(counts)
    })??;
    if opts.json {
        println!("{}", serde_json::to_string(&counts)?);
    } else {
        let verb = if counts.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        println!(
            "{verb} {} code(s), {} email(s), {} account(s)",
            counts.codes, counts.emails, counts.accounts
        );
    }
    Ok(())
}

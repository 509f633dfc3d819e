//! `activator purge`: the cron clean-up.
//!
//! Deletes spent codes (used, expired, or short and superseded),
//! sent/dead/expired emails older than the retention, claims ended over a
//! day ago, and, only when asked, accounts never activated. Deletes in batches, each its own short transaction, so a busy
//! `serve` never waits long on its locks; rows another purge has locked are
//! skipped, so purges on several hosts at once split the work.

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use serde::Serialize;

use crate::db::{self, activation_codes, claims, outbox, users};
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

#[derive(Debug, Serialize)]
struct Counts {
    dry_run: bool,
    codes: u64,
    emails: u64,
    claims: u64,
    accounts: u64,
}

fn days(n: u32) -> TimeDelta {
    TimeDelta::days(i64::from(n))
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
        let conn = &mut conn;
        let targets = [
            (&activation_codes::SPENT, Some(now)),
            (&outbox::FINISHED, Some(email_cutoff)),
            // Any code they were sent has expired a day later.
            (&claims::ENDED, Some(now - days(1))),
            (&users::STALE_PENDING, account_cutoff),
        ];
        let mut found = [0; 4];
        for ((rows, cutoff), found) in targets.into_iter().zip(&mut found) {
            let Some(cutoff) = cutoff else { continue };
            *found = if opts.dry_run {
                rows.count(conn, cutoff).await?
            } else {
                rows.delete(conn, cutoff, opts.batch_size).await?
            };
        }
        let [codes, emails, claims, accounts] = found;
        let counts = Counts {
            dry_run: opts.dry_run,
            codes,
            emails,
            claims,
            accounts,
        };
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
            "{verb} {} code(s), {} email(s), {} ended claim(s), {} account(s)",
            counts.codes, counts.emails, counts.claims, counts.accounts
        );
    }
    Ok(())
}

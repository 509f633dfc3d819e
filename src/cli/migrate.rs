//! `activator migrate`: apply (or list, or revert) the embedded migrations.

use anyhow::Context;

use crate::db::migrations;
use crate::settings::{DatabaseSettings, Environment};

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// List every migration and whether it is applied; change nothing.
    #[arg(long, conflicts_with = "revert")]
    status: bool,
    /// Revert the most recently applied migration.
    #[arg(long)]
    revert: bool,
}

pub fn run(opts: Opts, env: &Environment) -> anyhow::Result<()> {
    let settings = DatabaseSettings::from_source(env)?;
    let mut conn = migrations::connect(&settings.url)
        .context("cannot connect to the database (DATABASE_URL)")?;
    if opts.status {
        for migration in migrations::status(&mut conn).map_err(anyhow::Error::from_boxed)? {
            let mark = if migration.applied {
                "applied"
            } else {
                "pending"
            };
            println!("{mark:<8} {}", migration.name);
        }
    } else if opts.revert {
        let reverted = migrations::revert_last(&mut conn).map_err(anyhow::Error::from_boxed)?;
        println!("reverted {reverted}");
    } else {
        let applied = migrations::run_pending(&mut conn).map_err(anyhow::Error::from_boxed)?;
        if applied.is_empty() {
            println!("database is up to date");
        } else {
            println!(
                "applied {} migration(s): {}",
                applied.len(),
                applied.join(", ")
            );
        }
    }
    Ok(())
}

//! `activator passwords import FILE [OUT]`: builds the deny list's filter
//! file from a list of breached passwords, plain (one a line) or in the
//! breach corpus's `SHA1:COUNT` form, for `PASSWORD_DENYLIST_FILE`
//! (`crate::policy::denylist`). Reads `-` as standard input. Prints what
//! it wrote; a malformed line stops it, naming the line.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use crate::policy::denylist::{self, DenyList, Format};
use crate::settings::{Environment, Source};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build the deny-list filter file from plain or SHA1:COUNT lines.
    Import(ImportOpts),
}

#[derive(Debug, clap::Args)]
pub struct ImportOpts {
    /// The list: one password a line, or SHA1[:COUNT] lines; `-` reads
    /// standard input.
    file: PathBuf,
    /// Where the filter file goes (replaced atomically); default:
    /// PASSWORD_DENYLIST_FILE.
    out: Option<PathBuf>,
    /// How the lines read; `auto` decides by the first line.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    format: Format,
    /// Keep only SHA1:COUNT lines whose count is at least this.
    #[arg(long, default_value_t = 0)]
    min_count: u64,
}

pub fn run(command: Command, env: &Environment) -> anyhow::Result<()> {
    match command {
        Command::Import(opts) => import(opts, env),
    }
}

fn import(opts: ImportOpts, env: &Environment) -> anyhow::Result<()> {
    let out = opts
        .out
        .or_else(|| {
            env.get("PASSWORD_DENYLIST_FILE")
                .filter(|path| !path.trim().is_empty())
                .map(PathBuf::from)
        })
        .context("name the filter file to write (OUT), or set PASSWORD_DENYLIST_FILE")?;
    if opts.min_count > 0 && opts.format == Format::Plain {
        anyhow::bail!("--min-count applies to SHA1:COUNT lines, not to --format plain");
    }
    let started = Instant::now();
    let input: Box<dyn BufRead> = if opts.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&opts.file)
            .with_context(|| format!("cannot read {}", opts.file.display()))?;
        Box::new(std::io::BufReader::with_capacity(1 << 20, file))
    };
    let imported = denylist::import(input, opts.format, opts.min_count, &out)
        .with_context(|| format!("cannot import {}", opts.file.display()))?;
    // Read back as `serve` will: the file is checked before anyone maps it.
    let list = DenyList::open(&out)?;
    println!(
        "wrote {}: {} passwords ({} lines read, {} below --min-count), {} bytes ({:.2} bytes each), in {:.1} s",
        out.display(),
        list.entries(),
        imported.lines,
        imported.below_min_count,
        list.size(),
        list.size() as f64 / list.entries().max(1) as f64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

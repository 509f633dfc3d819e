//! `activator mailbox`: the local development email API (see
//! `crate::mail::mailbox`).

use std::net::IpAddr;

use rocket::figment::Figment;

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
    /// Port to listen on.
    #[arg(long, default_value_t = 8025)]
    port: u16,
    /// How many messages to keep (the oldest go first).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    capacity: u32,
}

pub fn run(opts: Opts) -> anyhow::Result<()> {
    let figment = Figment::from(rocket::Config::default())
        .merge(("address", opts.address))
        .merge(("port", opts.port))
        .merge(("ident", "activator-mailbox"))
        .merge(("cli_colors", false));
    tracing::info!(
        "mailbox listening on http://{}:{}/ (POST /v1/send, GET /v1/messages)",
        opts.address,
        opts.port
    );
    let capacity = usize::try_from(opts.capacity).unwrap_or(usize::MAX);
    rocket::execute(crate::mailbox::rocket(figment, capacity).launch())
        .map(drop)
        .map_err(|err| anyhow::anyhow!("mailbox failed: {err}"))
}

//! `activator mailbox`: the local development email API and SMTP server
//! (see `crate::devmail`).

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use rocket::figment::Figment;

use crate::devmail::Inbox;

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Address to listen on (HTTP and SMTP).
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
    /// Port of the web inbox and the email API.
    #[arg(long, default_value_t = 8025)]
    port: u16,
    /// Port that takes mail over SMTP (serve with SMTP_URL=smtp://127.0.0.1:PORT).
    #[arg(long, default_value_t = 2525)]
    smtp_port: u16,
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
    let capacity = usize::try_from(opts.capacity).unwrap_or(usize::MAX);
    let mailbox = Arc::new(Inbox::new(capacity));
    rocket::execute(async move {
        let smtp = tokio::net::TcpListener::bind((opts.address, opts.smtp_port))
            .await
            .with_context(|| {
                format!(
                    "cannot listen for SMTP on {}:{} (choose another with --smtp-port)",
                    opts.address, opts.smtp_port
                )
            })?;
        tracing::info!(
            "mailbox listening on http://{}:{}/ (POST /v1/send, GET /v1/messages) and smtp://{}:{}",
            opts.address,
            opts.port,
            opts.address,
            opts.smtp_port
        );
        let receiver = tokio::spawn(crate::devmail::smtp::serve(smtp, mailbox.clone()));
        let served = crate::devmail::serve_inbox(figment, mailbox).launch().await;
        receiver.abort();
        served
            .map(drop)
            .map_err(|err| anyhow::anyhow!("mailbox failed: {err}"))
    })
}

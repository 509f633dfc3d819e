//! `activator healthcheck`: asks a running `serve` (or `mailbox`) whether it
//! answers, for container `HEALTHCHECK`s and orchestrators' exec probes in
//! images that have no curl. Exit 0 on a 2xx answer; otherwise one line on
//! stderr (no answer, a timeout, another status) and exit 1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// The URL to GET [default: /health/live on the address `serve` binds:
    /// ROCKET_ADDRESS and ROCKET_PORT or Rocket.toml, on loopback when that
    /// is 0.0.0.0 or ::].
    #[arg(long)]
    url: Option<String>,
    /// Seconds the whole request may take.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=300))]
    timeout: u64,
}

pub fn run(opts: Opts) -> anyhow::Result<()> {
    let url = match opts.url {
        Some(url) => url,
        None => default_url()?,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(opts.timeout)))
        .http_status_as_error(false)
        // A redirect is not health; a proxy from the environment must not
        // answer for a server on loopback.
        .max_redirects(0)
        .proxy(None)
        .build()
        .into();
    let response = agent
        .get(&url)
        .call()
        .with_context(|| format!("{url}: no answer"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("{url}: answered {status}");
    }
    Ok(())
}

/// `/health/live` where `serve` listens, read from the same configuration
/// (`crate::figment`): an unspecified address means every interface, so
/// loopback of the same family answers.
fn default_url() -> anyhow::Result<String> {
    let figment = crate::figment();
    let address: IpAddr = figment
        .extract_inner("address")
        .context("invalid ROCKET_ADDRESS")?;
    let port: u16 = figment
        .extract_inner("port")
        .context("invalid ROCKET_PORT")?;
    Ok(format!(
        "http://{}/health/live",
        SocketAddr::new(probe_address(address), port)
    ))
}

fn probe_address(bound: IpAddr) -> IpAddr {
    match bound {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_bind_address_is_probed_on_loopback() {
        let probe = |text: &str| probe_address(text.parse().unwrap()).to_string();
        assert_eq!(probe("0.0.0.0"), "127.0.0.1");
        assert_eq!(probe("::"), "::1");
        assert_eq!(probe("10.1.2.3"), "10.1.2.3");
        assert_eq!(probe("::1"), "::1");
    }
}

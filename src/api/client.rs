//! Who is asking, for the per-IP limits (docs/LIMITS.md).
//!
//! The client's address is the socket's peer. Only when the peer is a
//! trusted proxy (`TRUSTED_PROXIES`) is `X-Forwarded-For` believed, and then
//! only its right-most address that is not a trusted proxy: each proxy
//! appends the address it saw, so everything to the left of that one was
//! written by the client and proves nothing. No other header is trusted
//! (Rocket's own reading of `X-Real-IP` is turned off in `crate::figment`).
//!
//! An IPv6 client is counted by its /64: one host is routinely given a whole
//! /64, and every address in it, so a limit per address would be no limit.
//!
//! Loopback is a trusted proxy by default (as uvicorn's
//! `--forwarded-allow-ips`): a reverse proxy on the same host is believed
//! without being named, and a loopback client without the header is
//! limited like any other. A client in `RATE_LIMIT_EXEMPT` (none by
//! default) skips the per-IP limits; the first request from such a peer
//! that is not trusted and carries `X-Forwarded-For` logs a warning naming
//! `TRUSTED_PROXIES`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use ipnet::IpNet;
use rocket::request::{self, FromRequest, Request};

use crate::client_ip::ClientIp;
use crate::settings::NetworkSettings;

/// The network settings, as managed state, and whether the warning about an
/// untrusted proxy was logged.
pub struct Network {
    settings: NetworkSettings,
    warned: AtomicBool,
}

impl Network {
    pub fn new(settings: NetworkSettings) -> Self {
        Self {
            settings,
            warned: AtomicBool::new(false),
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        contains(&self.settings.trusted_proxies, ip)
    }

    /// Whether `peer` is a trusted proxy, whose `X-Forwarded-For` (and
    /// `traceparent`, `api::access`) is believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted(peer.to_canonical())
    }

    /// The client's address for a request from `peer` with the
    /// `X-Forwarded-For` values `forwarded` (in header order).
    pub fn client(&self, peer: IpAddr, forwarded: &[&str]) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusted(peer) {
            if !forwarded.is_empty()
                && contains(&self.settings.rate_limit_exempt, peer)
                && !self.warned.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    %peer,
                    "a request from an exempt address carries X-Forwarded-For: if a reverse \
                     proxy runs there, list it in TRUSTED_PROXIES so the per-IP limits see \
                     the real clients"
                );
            }
            return peer;
        }
        // Right to left: skip trusted proxies; the first other address is
        // the client. One that does not parse ends the walk: the last
        // trusted hop is then the best known address.
        let mut client = peer;
        for hop in forwarded.iter().flat_map(|value| value.split(',')).rev() {
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !self.trusted(ip) {
                break;
            }
        }
        client
    }

    /// The client of a request from `peer` with the `X-Forwarded-For`
    /// values `forwarded`, as the per-IP limits count it. A client that a
    /// trusted proxy's header names is never exempt, whatever its address
    /// (a forwarded `127.0.0.5` is somebody's claim, not loopback); nor is
    /// the proxy itself when the header it sent does not read as an address
    /// (`unknown`, empty, a zone-scoped address): exempting it would exempt
    /// every client behind it.
    pub fn client_ip(&self, peer: IpAddr, forwarded: &[&str]) -> ClientIp {
        let client = self.client(peer, forwarded);
        if self.trusted(peer.to_canonical()) && !forwarded.is_empty() {
            counted(client)
        } else {
            self.limited(client)
        }
    }

    /// The scheme the client used, for an absolute URL back to this
    /// service: `X-Forwarded-Proto` (`http` or `https`) from a trusted
    /// proxy; `http` for a client that connected directly (activator
    /// serves no TLS itself), whatever it wrote in the header; `None` when
    /// a trusted proxy forwarded the request (`X-Forwarded-For`) without a
    /// scheme it can be believed on, so that the caller answers with a
    /// relative URL, which keeps whatever scheme the client used.
    pub fn scheme(
        &self,
        peer: IpAddr,
        forwarded_for: &[&str],
        forwarded_proto: Option<&str>,
    ) -> Option<&'static str> {
        if !self.trusted(peer.to_canonical()) {
            return Some("http");
        }
        // A proxy that appends rather than sets makes a list: the left-most
        // is the first proxy's, the one the client spoke to.
        let proto = forwarded_proto.and_then(|value| value.split(',').next());
        match proto
            .map(|proto| proto.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("https") => Some("https"),
            Some("http") => Some("http"),
            Some(_) => None,
            None if forwarded_for.is_empty() => Some("http"),
            None => None,
        }
    }

    /// The client as the per-IP limits count it: its address (an IPv6
    /// one's /64); `None` when exempt.
    pub fn limited(&self, client: IpAddr) -> ClientIp {
        if contains(&self.settings.rate_limit_exempt, client) {
            return ClientIp::EXEMPT;
        }
        counted(client)
    }
}

/// `client` as the limits count it: an IPv4 address, or an IPv6 one's /64.
fn counted(client: IpAddr) -> ClientIp {
    ClientIp(Some(match client {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }))
}

fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|net| net.contains(&ip))
}

/// One `X-Forwarded-For` entry: an address, possibly with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The request's peer; Rocket's local test client has none: loopback.
pub fn peer(request: &Request<'_>) -> IpAddr {
    request
        .remote()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |addr| addr.ip())
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ClientIp {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let Some(network) = request.rocket().state::<Network>() else {
            return request::Outcome::Success(ClientIp::EXEMPT);
        };
        let forwarded: Vec<&str> = request.headers().get("X-Forwarded-For").collect();
        request::Outcome::Success(network.client_ip(peer(request), &forwarded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(trusted: &str, exempt: &str) -> Network {
        let nets = |list: &str| {
            list.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect()
        };
        Network::new(NetworkSettings {
            trusted_proxies: nets(trusted),
            rate_limit_exempt: nets(exempt),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_scheme_is_believed_only_from_a_trusted_proxy() {
        let network = network("127.0.0.1/32", "");
        let proxy = ip("127.0.0.1");
        let client = ["203.0.113.7"];
        assert_eq!(network.scheme(proxy, &client, Some("https")), Some("https"));
        assert_eq!(
            network.scheme(proxy, &client, Some("HTTPS, http")),
            Some("https")
        );
        assert_eq!(network.scheme(proxy, &client, Some("http")), Some("http"));
        assert_eq!(network.scheme(proxy, &client, Some("gopher")), None);
        assert_eq!(network.scheme(proxy, &client, None), None);
        assert_eq!(network.scheme(proxy, &[], None), Some("http"));
        // A client's own header proves nothing.
        assert_eq!(
            network.scheme(ip("198.51.100.4"), &client, Some("https")),
            Some("http")
        );
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_headers_say() {
        let network = network("", "127.0.0.0/8");
        assert_eq!(
            network.client(ip("203.0.113.9"), &["198.51.100.1"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            network.client(ip("127.0.0.1"), &["198.51.100.1"]),
            ip("127.0.0.1")
        );
        assert!(
            network.warned.load(Ordering::Relaxed),
            "the warning was logged"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let network = network("10.0.0.0/8,127.0.0.1/32", "");
        let peer = ip("10.0.0.2");
        // The client forged the left part; the proxies appended the rest.
        let chain = ["1.1.1.1, 203.0.113.7", "10.0.0.5"];
        assert_eq!(network.client(peer, &chain), ip("203.0.113.7"));
        assert_eq!(
            network.client(peer, &["203.0.113.7:4711"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            network.client(peer, &["[2001:db8::7]:4711"]),
            ip("2001:db8::7")
        );
        // Only proxies: the left-most one; garbage: the last trusted hop.
        assert_eq!(
            network.client(peer, &["10.0.0.9, 10.0.0.5"]),
            ip("10.0.0.9")
        );
        assert_eq!(network.client(peer, &["203.0.113.7, junk"]), peer);
        assert_eq!(network.client(peer, &[]), peer);
        // An untrusted peer's header is ignored.
        assert_eq!(
            network.client(ip("203.0.113.1"), &["1.2.3.4"]),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn exempt_clients_are_not_limited() {
        let network = network("", "127.0.0.0/8,::1/128");
        assert_eq!(network.limited(ip("127.0.0.5")), ClientIp::EXEMPT);
        assert_eq!(network.limited(ip("::1")), ClientIp::EXEMPT);
        assert_eq!(
            network.limited(ip("192.0.2.1")),
            ClientIp(Some(ip("192.0.2.1")))
        );
        // IPv4 clients seen as IPv4-mapped IPv6 peers are the same client.
        assert_eq!(network.client(ip("::ffff:127.0.0.1"), &[]), ip("127.0.0.1"));
        // An IPv6 client is its /64.
        assert_eq!(
            network.limited(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ClientIp(Some(ip("2001:db8:1:2::")))
        );
    }

    #[test]
    fn a_client_named_by_a_trusted_proxy_is_never_exempt() {
        let network = network("127.0.0.1/32", "127.0.0.0/8,::1/128");
        let proxy = ip("127.0.0.1");
        let proxy_counted = ClientIp(Some(proxy));
        for junk in ["junk", "unknown", "", "fe80::1%eth0", "203.0.113.7, junk"] {
            assert_eq!(network.client_ip(proxy, &[junk]), proxy_counted, "{junk:?}");
        }
        assert_eq!(network.client_ip(proxy, &["[::1]"]), proxy_counted);
        assert_eq!(
            network.client_ip(proxy, &["127.0.0.5"]),
            ClientIp(Some(ip("127.0.0.5")))
        );
        assert_eq!(
            network.client_ip(proxy, &["::ffff:127.0.0.1"]),
            proxy_counted
        );
        // The proxy's own requests, with no header, stay exempt.
        assert_eq!(network.client_ip(proxy, &[]), ClientIp::EXEMPT);
        assert_eq!(
            network.client_ip(proxy, &["203.0.113.7"]),
            ClientIp(Some(ip("203.0.113.7")))
        );
    }
}

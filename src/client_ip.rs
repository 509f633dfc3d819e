//! Who is asking, as the per-IP limits and the password-hash queue see it
//! (`api::client` works it out from the connection).

use std::net::IpAddr;

/// The client's address for the per-IP limits; `None` when the client is
/// exempt (`RATE_LIMIT_EXEMPT`) or not a network client at all (the CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// A caller no per-IP limit applies to.
    pub const EXEMPT: ClientIp = ClientIp(None);

    /// Whose share of the password-hash queue this client takes: an IPv4
    /// address, or an IPv6 client's /48 (a site's allocation holds 65,536
    /// /64s, each counted apart elsewhere); `None` when exempt.
    pub fn queue_share(self) -> Option<IpAddr> {
        self.0.map(|ip| match ip {
            IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !(u128::MAX >> 48),
            )),
            v4 => v4,
        })
    }

    /// The client's network as the shared budgets record it: its address
    /// (an IPv6 client's /64), `-` for an exempt caller or the CLI.
    pub fn network_name(self) -> String {
        name(self.0)
    }

    /// The client's site (see [`ClientIp::queue_share`]) as the shared
    /// budgets and the claims record it, `-` for an exempt caller.
    pub fn site_name(self) -> String {
        name(self.queue_share())
    }
}

fn name(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_shares_the_hash_queue_with_its_48() {
        let of = |ip: &str| ClientIp(Some(ip.parse().unwrap())).queue_share();
        assert_eq!(of("2001:db8:1:2::"), of("2001:db8:1:ff00::"));
        assert_eq!(of("2001:db8:1:2::"), Some("2001:db8:1::".parse().unwrap()));
        assert_ne!(of("2001:db8:1::"), of("2001:db8:2::"));
        assert_eq!(of("192.0.2.7"), Some("192.0.2.7".parse().unwrap()));
        assert_eq!(ClientIp::EXEMPT.queue_share(), None);
        let client = ClientIp(Some("2001:db8:1:2::".parse().unwrap()));
        assert_eq!(
            (client.network_name(), client.site_name()),
            ("2001:db8:1:2::".to_owned(), "2001:db8:1::".to_owned())
        );
        assert_eq!(ClientIp::EXEMPT.site_name(), "-");
    }
}

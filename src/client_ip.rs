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
}

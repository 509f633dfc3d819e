//! An address's failed sign-ins, a budget shared among client networks
//! (`count_shared.lua`): each network has its own share, the address a
//! ceiling over all of them.

use std::time::Duration;

use redis::{RedisResult, Script};

use super::{Decision, Limit, Limiter, millis, pttl};
use crate::client_ip::ClientIp;

/// A budget shared among client networks: its total and its hash of counts
/// by network (one hash tag).
pub(super) struct SharedKeys {
    pub(super) total: String,
    pub(super) by_network: String,
}

/// Counts one in a budget shared among client networks (`count_shared.lua`).
const COUNT_SHARED: &str = include_str!("count_shared.lua");

/// Gives back one count of a shared budget (`give_back_shared.lua`).
const GIVE_BACK_SHARED: &str = include_str!("give_back_shared.lua");

/// The scripts of shared budgets.
pub(super) struct Scripts {
    count: Script,
    give_back: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            count: Script::new(COUNT_SHARED),
            give_back: Script::new(GIVE_BACK_SHARED),
        }
    }
}

impl Limiter {
    /// Counts one for `client`'s network in a budget shared among networks:
    /// `(mine, total)` are the limits, reported as `reached[0]` and
    /// `reached[1]`. Past a full total a network that has not used the
    /// budget passes, once per site and up to as many passes as the total.
    pub(super) async fn count_shared(
        &self,
        keys: &SharedKeys,
        client: ClientIp,
        (mine, total): (u32, u32),
        window: Duration,
        reached: [Limit; 2],
    ) -> RedisResult<Decision> {
        let (full, wait): (usize, i64) = self
            .shared
            .count
            .key(&keys.total)
            .key(&keys.by_network)
            .arg(self.names.client_field(&client.network_name()))
            .arg(mine)
            .arg(total)
            .arg(millis(window))
            .arg(self.names.client_field(&client.site_name()))
            // As many passes again as the total.
            .arg(total)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match full.checked_sub(1).and_then(|i| reached.get(i)) {
            None => Decision::Allowed,
            Some(&limit) => Decision::Limited {
                limit,
                retry_after: pttl(wait),
            },
        })
    }

    /// Gives back what [`Limiter::count_shared`] counted for `client`.
    pub(super) async fn give_back_shared(
        &self,
        keys: &SharedKeys,
        client: ClientIp,
    ) -> RedisResult<()> {
        self.shared
            .give_back
            .key(&keys.total)
            .key(&keys.by_network)
            .arg(self.names.client_field(&client.network_name()))
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }
}

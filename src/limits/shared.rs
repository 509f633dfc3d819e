//! Budgets shared among client networks (an address's failed sign-ins, a
//! mailbox's emails; `count_shared.lua`), and an inbox's budget of wrong
//! short codes.

use std::time::Duration;

use redis::RedisResult;

use super::{DAY, Decision, Limit, Limiter, YEAR, key, millis, pttl};
use crate::address::Email;
use crate::client_ip::ClientIp;

/// A mailbox's emails of the day: all networks', and by network (a hash).
pub(super) fn mailbox_keys(mailbox: &str) -> SharedKeys {
    let tag = format!("mailbox:{mailbox}");
    SharedKeys {
        total: key(&tag, "emails"),
        by_network: key(&tag, "emails:by-network"),
    }
}

/// A mailbox's wrong short codes: of the day, of the year.
fn guess_keys(mailbox: &str) -> [String; 2] {
    let tag = format!("mailbox:{mailbox}");
    [
        key(&tag, "short-guesses:day"),
        key(&tag, "short-guesses:year"),
    ]
}

/// What a shared budget's full total does to a network's request.
#[derive(Debug, Clone, Copy)]
pub(super) enum PastTotal {
    /// A network that has not used the budget in this window passes, once
    /// per wider prefix (an IPv6 /48) and up to as many passes as the total.
    FirstTryPasses,
    /// It is counted, not refused.
    Count,
}

/// A budget shared among client networks: its total and its hash of counts
/// by network (one hash tag).
pub(super) struct SharedKeys {
    pub(super) total: String,
    pub(super) by_network: String,
}

impl Limiter {
    /// Counts an activation email to `email`'s mailbox asked for by
    /// `client`, unless the mailbox had its day's share from the client's
    /// network, or from all of them (past which a network's first email
    /// still goes, once per wider prefix and up to as many again: others
    /// cannot spend it). A `renewal` (a long code replacing short ones the
    /// inbox can no longer use) is never refused for the total.
    pub async fn reserve_mailbox_email(
        &self,
        email: &Email,
        client: ClientIp,
        renewal: bool,
    ) -> RedisResult<Decision> {
        let policy = &self.policy;
        self.count_shared(
            &mailbox_keys(&self.inboxes.of(email)),
            client,
            (
                policy.emails_per_mailbox_daily,
                policy.emails_per_mailbox_daily_total,
            ),
            DAY,
            if renewal {
                PastTotal::Count
            } else {
                PastTotal::FirstTryPasses
            },
            [Limit::MailboxDaily, Limit::MailboxDailyTotal],
            None,
        )
        .await
    }

    /// Gives back an email counted by [`Limiter::reserve_mailbox_email`]
    /// that was not sent after all.
    pub async fn release_mailbox_email(&self, email: &Email, client: ClientIp) -> RedisResult<()> {
        self.give_back_shared(&mailbox_keys(&self.inboxes.of(email)), client)
            .await
    }

    /// Whether `email`'s inbox has spent its budget of wrong short codes
    /// (of the day or of the year): its codes are long then.
    pub async fn inbox_guessed_out(&self, email: &Email) -> RedisResult<bool> {
        let [day, year] = guess_keys(&self.inboxes.of(email));
        let (day, year): (Option<u32>, Option<u32>) = redis::pipe()
            .get(day)
            .get(year)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(day.unwrap_or(0) >= self.policy.inbox_short_guesses_daily
            || year.unwrap_or(0) >= self.policy.inbox_short_guesses_yearly)
    }

    /// Counts a short code's check against `email`'s inbox before it is
    /// checked; false (counting nothing) when the inbox has spent its
    /// budget, and the code must not be checked. A right code gives it back
    /// ([`Limiter::release_inbox_guess`]).
    pub async fn reserve_inbox_guess(&self, email: &Email) -> RedisResult<bool> {
        let [day, year] = guess_keys(&self.inboxes.of(email));
        let policy = &self.policy;
        let decision = self
            .count(
                &[
                    (day, policy.inbox_short_guesses_daily, DAY),
                    (year, policy.inbox_short_guesses_yearly, YEAR),
                ],
                // Never answered as such: the caller reads a refusal as a
                // wrong code.
                &[Limit::ActivationBudget, Limit::ActivationBudget],
            )
            .await?;
        Ok(decision == Decision::Allowed)
    }

    /// Gives back what [`Limiter::reserve_inbox_guess`] counted.
    pub async fn release_inbox_guess(&self, email: &Email) -> RedisResult<()> {
        let [day, year] = guess_keys(&self.inboxes.of(email));
        let day = self.give_back(&day).await;
        self.give_back(&year).await.and(day)
    }

    /// Counts one for `client`'s network in a budget shared among networks
    /// (`count_shared.lua`): `(mine, total)` are the limits, reported as
    /// `reached[0]` and `reached[1]`; `past_total` says what a full total
    /// does. With `check`, refuses first when the counter it names (in the
    /// same hash tag) is at its limit, without counting in it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn count_shared(
        &self,
        keys: &SharedKeys,
        client: ClientIp,
        (mine, total): (u32, u32),
        window: Duration,
        past_total: PastTotal,
        reached: [Limit; 2],
        check: Option<(&str, u32, Limit)>,
    ) -> RedisResult<Decision> {
        let mut invocation = self.count_shared.prepare_invoke();
        invocation.key(&keys.total).key(&keys.by_network);
        if let Some((key, _, _)) = check {
            invocation.key(key);
        }
        let (full, wait): (usize, i64) = invocation
            .arg(client.network_name())
            .arg(mine)
            .arg(total)
            .arg(millis(window))
            .arg(match past_total {
                PastTotal::FirstTryPasses => "1",
                PastTotal::Count => "2",
            })
            .arg(client.site_name())
            // As many passes again as the total.
            .arg(total)
            .arg(check.map_or(0, |(_, limit, _)| limit))
            .invoke_async(&mut self.conn.clone())
            .await?;
        let reached = [
            reached[0],
            reached[1],
            check.map_or(reached[1], |(_, _, limit)| limit),
        ];
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
        self.give_back_shared
            .key(&keys.total)
            .key(&keys.by_network)
            .arg(client.network_name())
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }
}

//! What one inbox (the mailbox an address reaches, `address::Inboxes`)
//! may be sent and may be guessed: its emails of the day, shared among
//! client networks (`reserve_email.lua`), and its budget of guessing odds
//! (`inbox_guess.lua`). docs/LIMITS.md, "Emails per inbox" and "Guessing
//! odds per inbox".

use std::time::Duration;

use redis::{RedisResult, Script};

use super::{DAY, Decision, Limit, Limiter, YEAR, millis, pttl};
use crate::client_ip::ClientIp;
use crate::code::LONG_LENGTH;

/// An email counted for an inbox, to give back if it is not sent: in
/// which day, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmailSlot {
    day: Period,
    /// The first email of the client's site that day, not counted against
    /// the total; else counted.
    sites_first: bool,
}

/// How a code comparison was paid for, if it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuessPaid {
    /// A registrant's first attempt: paid when its short code was issued,
    /// or free (a long code's).
    First,
    /// Paid now, from the inbox's budget of that day and year: given back
    /// if the code is right.
    Units(u64, Period, Period),
    /// The budget has no room: the code is not compared.
    Refused,
}

/// A refused guess is one the inbox's budget had no room for.
impl super::Verdict for GuessPaid {
    fn refused_by(&self) -> Option<&'static str> {
        matches!(self, Self::Refused).then_some("inbox_guesses")
    }
}

/// A window of the calendar's: the same for every inbox and client, so a
/// refusal's wait tells nobody when someone else asked, and what is given
/// back goes to the window it was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Its number since the epoch.
    index: u64,
    /// When it ends, in milliseconds since the epoch.
    end_ms: u64,
}

impl Period {
    /// The window of `length` that holds now.
    fn now(length: Duration) -> Self {
        let length = millis(length).max(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        let index = now / length;
        Self {
            index,
            end_ms: (index + 1).saturating_mul(length),
        }
    }
}

/// How long a registrant's prepaid first attempt is kept: longer than any
/// code lives.
const PREPAID_LIFE: Duration = Duration::from_secs(2 * 86_400);

/// The inbox's scripts.
pub(super) struct Scripts {
    reserve_email: Script,
    release_email: Script,
    guess: Script,
    give_back_units: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            reserve_email: Script::new(include_str!("reserve_email.lua")),
            release_email: Script::new(include_str!("release_email.lua")),
            guess: Script::new(include_str!("inbox_guess.lua")),
            give_back_units: Script::new(include_str!("give_back_units.lua")),
        }
    }
}

/// The odds of comparing with a code of `digits` digits, in units of
/// 10^-8.
pub fn cost_of(digits: usize) -> u64 {
    10u64.pow(u32::try_from(LONG_LENGTH.saturating_sub(digits)).unwrap_or(0))
}

impl Limiter {
    fn email_keys(&self, inbox: &str, day: Period) -> [String; 2] {
        [
            self.names.inbox(inbox, &format!("emails:{}", day.index)),
            self.names
                .inbox(inbox, &format!("emails:by-network:{}", day.index)),
        ]
    }

    fn guess_keys(&self, inbox: &str, day: Period, year: Period) -> [String; 3] {
        [
            self.names
                .inbox(inbox, &format!("guesses:day:{}", day.index)),
            self.names
                .inbox(inbox, &format!("guesses:year:{}", year.index)),
            self.names.inbox(inbox, "guesses:prepaid"),
        ]
    }

    /// Counts an activation email to `inbox` asked for by `client`, unless
    /// the client's network had its day's share, or the inbox its day's
    /// total (past which each site still gets its first email of the day:
    /// nobody else can spend it).
    pub async fn reserve_email(
        &self,
        inbox: &str,
        client: ClientIp,
    ) -> RedisResult<Result<EmailSlot, Decision>> {
        super::checked("mailbox_daily", self.count_email(inbox, client)).await
    }

    async fn count_email(
        &self,
        inbox: &str,
        client: ClientIp,
    ) -> RedisResult<Result<EmailSlot, Decision>> {
        let policy = &self.policy;
        let day = Period::now(DAY);
        let [total, by_network] = self.email_keys(inbox, day);
        let (full, value): (usize, i64) = self
            .inbox
            .reserve_email
            .key(total)
            .key(by_network)
            .arg(self.names.client_field(&client.network_name()))
            .arg(self.names.client_field(&client.site_name()))
            .arg(policy.emails_per_mailbox_daily)
            .arg(policy.emails_per_mailbox_daily_total)
            .arg(day.end_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let limit = match full {
            0 => {
                return Ok(Ok(EmailSlot {
                    day,
                    sites_first: value == 1,
                }));
            }
            1 => Limit::MailboxDaily,
            _ => Limit::MailboxDailyTotal,
        };
        Ok(Err(Decision::Limited {
            limit,
            retry_after: pttl(value),
        }))
    }

    /// Gives back an email [`Limiter::reserve_email`] counted that was not
    /// sent after all.
    pub async fn release_email(
        &self,
        inbox: &str,
        client: ClientIp,
        slot: EmailSlot,
    ) -> RedisResult<()> {
        let [total, by_network] = self.email_keys(inbox, slot.day);
        self.inbox
            .release_email
            .key(total)
            .key(by_network)
            .arg(self.names.client_field(&client.network_name()))
            .arg(self.names.client_field(&client.site_name()))
            .arg(if slot.sites_first { "1" } else { "2" })
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    /// Whether a short code of `code_length` digits may be issued to
    /// `registrant` of `inbox`: its first attempt is paid for now (or was),
    /// so nobody else's guesses can take it; a registrant that has
    /// attempted before needs only room in the budget. False: the budget
    /// has no room, and the code is issued long.
    pub async fn reserve_short_code(
        &self,
        inbox: &str,
        registrant: &str,
        code_length: usize,
        first_unspent: bool,
    ) -> RedisResult<bool> {
        let (answer, _, _) = self
            .guess(
                inbox,
                "prepay",
                cost_of(code_length),
                registrant,
                first_unspent,
            )
            .await?;
        Ok(answer != 0)
    }

    /// Pays for comparing a typed code with stored codes worth `cost`
    /// units, on `registrant`'s `first` attempt or a later one.
    pub async fn pay_guess(
        &self,
        inbox: &str,
        registrant: &str,
        cost: u64,
        first: bool,
    ) -> RedisResult<GuessPaid> {
        super::checked("inbox_guesses", async {
            Ok(
                match self.guess(inbox, "pay", cost, registrant, first).await? {
                    (2, _, _) => GuessPaid::First,
                    (1, day, year) => GuessPaid::Units(cost, day, year),
                    _ => GuessPaid::Refused,
                },
            )
        })
        .await
    }

    async fn guess(
        &self,
        inbox: &str,
        mode: &str,
        cost: u64,
        registrant: &str,
        first: bool,
    ) -> RedisResult<(i64, Period, Period)> {
        let policy = &self.policy;
        let (day, year) = (Period::now(DAY), Period::now(YEAR));
        let [day_key, year_key, prepaid] = self.guess_keys(inbox, day, year);
        // The settings count guesses of 4 digits: so many times 10^4 units.
        let units = |guesses: u32| u64::from(guesses) * cost_of(4);
        let answer = self
            .inbox
            .guess
            .key(day_key)
            .key(year_key)
            .key(prepaid)
            .arg(mode)
            .arg(cost)
            .arg(units(policy.inbox_short_guesses_daily))
            .arg(day.end_ms)
            .arg(units(policy.inbox_short_guesses_yearly))
            .arg(year.end_ms)
            .arg(registrant)
            .arg(if first { "1" } else { "0" })
            .arg(millis(PREPAID_LIFE))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok((answer, day, year))
    }

    /// Gives back what [`Limiter::pay_guess`] took for a code that turned
    /// out right, to the windows it was taken from.
    pub async fn give_back_guess(&self, inbox: &str, paid: GuessPaid) -> RedisResult<()> {
        let GuessPaid::Units(cost, day, year) = paid else {
            return Ok(());
        };
        let [day, year, _] = self.guess_keys(inbox, day, year);
        self.inbox
            .give_back_units
            .key(day)
            .key(year)
            .arg(cost)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    /// The units of guessing odds `inbox` has used in the current day's
    /// and year's windows, for support and tests.
    pub async fn guesses_used(&self, inbox: &str) -> RedisResult<(u64, u64)> {
        let [day, year, _] = self.guess_keys(inbox, Period::now(DAY), Period::now(YEAR));
        let (day, year): (Option<u64>, Option<u64>) = redis::pipe()
            .get(day)
            .get(year)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok((day.unwrap_or(0), year.unwrap_or(0)))
    }
}

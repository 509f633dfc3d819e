//! The rate limits' settings (docs/LIMITS.md).

use std::time::Duration;

use super::{NONE, SettingsError, Source, count, integer, seconds};

/// Rate-limit policy (docs/LIMITS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    pub attempt_limit: u32,
    pub attempt_window: Duration,
    pub lock: Duration,
    pub resend_per_minute: u32,
    pub resend_daily: u32,
    pub activation_max_failures: u32,
    pub activation_failures_per_ip: u32,
    pub activation_failure_window: Duration,
    /// Wrong short codes checked for one inbox in a day, and in a year.
    pub inbox_short_guesses_daily: u32,
    pub inbox_short_guesses_yearly: u32,
    /// Per (email, client network).
    pub auth_failures_per_email: u32,
    /// Per email, all networks together.
    pub auth_failure_ceiling: u32,
    pub auth_failures_per_ip: u32,
    /// Successful sign-ins per email and per client IP, in the same window.
    pub sign_ins_per_email: u32,
    pub sign_ins_per_ip: u32,
    pub auth_failure_window: Duration,
    pub register_per_ip: u32,
    pub register_window: Duration,
    pub hash_queue_per_ip: usize,
    /// Per (mailbox, client network).
    pub emails_per_mailbox_daily: u32,
    /// Per mailbox, all networks together.
    pub emails_per_mailbox_daily_total: u32,
}

impl LimitSettings {
    pub fn from_source(source: &impl Source) -> Result<Self, SettingsError> {
        Ok(Self {
            attempt_limit: count(source, "ACTIVATION_ATTEMPT_LIMIT")?,
            attempt_window: seconds(source, "ACTIVATION_ATTEMPT_WINDOW_SECONDS")?,
            lock: seconds(source, "ACTIVATION_LOCK_SECONDS")?,
            resend_per_minute: count(source, "RESEND_PER_MINUTE_LIMIT")?,
            resend_daily: count(source, "RESEND_DAILY_LIMIT")?,
            activation_max_failures: count(source, "ACTIVATION_MAX_FAILURES")?,
            activation_failures_per_ip: count(source, "ACTIVATION_FAILURE_PER_IP_LIMIT")?,
            activation_failure_window: seconds(source, "ACTIVATION_FAILURE_PER_IP_WINDOW_SECONDS")?,
            inbox_short_guesses_daily: count(source, "INBOX_SHORT_CODE_GUESSES_DAILY")?,
            inbox_short_guesses_yearly: count(source, "INBOX_SHORT_CODE_GUESSES_YEARLY")?,
            auth_failures_per_email: count(source, "AUTH_FAILURE_LIMIT")?,
            auth_failure_ceiling: count(source, "AUTH_FAILURE_CEILING")?,
            auth_failures_per_ip: count(source, "AUTH_FAILURE_PER_IP_LIMIT")?,
            sign_ins_per_email: count(source, "SIGN_IN_LIMIT")?,
            sign_ins_per_ip: count(source, "SIGN_IN_PER_IP_LIMIT")?,
            auth_failure_window: seconds(source, "AUTH_FAILURE_WINDOW_SECONDS")?,
            register_per_ip: count(source, "REGISTER_PER_IP_LIMIT")?,
            register_window: seconds(source, "REGISTER_PER_IP_WINDOW_SECONDS")?,
            hash_queue_per_ip: integer(source, "HASH_QUEUE_PER_IP", 1..=10_000)?,
            emails_per_mailbox_daily: count(source, "EMAIL_PER_MAILBOX_DAILY_LIMIT")?,
            emails_per_mailbox_daily_total: count(source, "EMAIL_PER_MAILBOX_DAILY_TOTAL")?,
        })
    }
}

/// The defaults of [`VARIABLES`](super::VARIABLES).
impl Default for LimitSettings {
    fn default() -> Self {
        Self::from_source(&NONE)
            .unwrap_or_else(|err| panic!("a default of VARIABLES does not parse: {err}"))
    }
}

//! Refusals remembered in process until their window ends, for the fixed
//! windows that only ever fill: a client's registrations and its
//! successful sign-ins are counted and never given back, and nothing but
//! time clears them (docs/LIMITS.md), so once Redis says such a window is
//! full it stays full until its key expires. A client that keeps asking is
//! refused from memory, without a Redis round trip, with the answer Redis
//! would give: every instance still counts in the one window Redis keeps,
//! and a window is never full here longer than it is there.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The windows remembered at most: a flood from more clients than this
/// asks Redis for the rest (each entry is about 60 bytes).
const CAPACITY: usize = 65_536;

/// Redis expires a key by its own clock, reached a round trip later than
/// the answer was read: a window is remembered this much less than its
/// time left, so it is never refused here after it reopened there.
const MARGIN: Duration = Duration::from_millis(10);

#[derive(Default)]
pub(super) struct Remembered {
    until: Mutex<HashMap<(&'static str, IpAddr), Instant>>,
}

impl Remembered {
    /// The time left of the full window `what` of `ip`, if remembered.
    pub(super) fn refusal(&self, what: &'static str, ip: IpAddr) -> Option<Duration> {
        let mut until = self.until.lock().ok()?;
        let now = Instant::now();
        match until.get(&(what, ip)) {
            Some(&end) if end > now => Some(end - now),
            Some(_) => {
                until.remove(&(what, ip));
                None
            }
            None => None,
        }
    }

    /// Remembers that the window `what` of `ip` is full for `left` more.
    pub(super) fn remember(&self, what: &'static str, ip: IpAddr, left: Duration) {
        let Some(left) = left.checked_sub(MARGIN).filter(|left| !left.is_zero()) else {
            return;
        };
        let Ok(mut until) = self.until.lock() else {
            return;
        };
        let now = Instant::now();
        if until.len() >= CAPACITY {
            until.retain(|_, end| *end > now);
            if until.len() >= CAPACITY {
                return;
            }
        }
        until.insert((what, ip), now + left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_remembered_until_its_window_ends_less_the_margin() {
        let remembered = Remembered::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(remembered.refusal("register", ip), None);
        remembered.remember("register", ip, Duration::from_millis(60));
        let left = remembered.refusal("register", ip).unwrap();
        assert!(left <= Duration::from_millis(50), "{left:?}");
        // Another window of the same client, the same window of another.
        assert_eq!(remembered.refusal("sign-ins", ip), None);
        assert_eq!(
            remembered.refusal("register", "192.0.2.8".parse().unwrap()),
            None
        );
        std::thread::sleep(Duration::from_millis(55));
        assert_eq!(remembered.refusal("register", ip), None);
        // Less than the margin left: not worth remembering.
        remembered.remember("register", ip, Duration::from_millis(5));
        assert_eq!(remembered.refusal("register", ip), None);
    }
}

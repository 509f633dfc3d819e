//! Events any client can repeat thousands of times a second, said in the
//! log now and then rather than each time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a noisy event is quiet after it was said.
pub const QUIET_FOR: Duration = Duration::from_secs(10);

/// An event any client can repeat thousands of times a second (a full
/// password-hash queue, a bad header): counted each time, said the first
/// time and then at most once per interval, with how many happened since.
pub struct Quieted {
    count: AtomicU64,
    said: Mutex<Option<Instant>>,
    every: Duration,
}

impl Quieted {
    pub const fn new(every: Duration) -> Self {
        Self {
            count: AtomicU64::new(0),
            said: Mutex::new(None),
            every,
        }
    }

    /// Counts one occurrence; see [`Quieted::due`].
    pub fn count(&self) -> Option<u64> {
        self.add();
        self.due()
    }

    /// Counts one occurrence, to be said by a later [`Quieted::due`].
    pub fn add(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many occurrences to say now, if it is time to say them: the
    /// first, then what was counted since, once per interval.
    pub fn due(&self) -> Option<u64> {
        let mut said = self
            .said
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if said.is_some_and(|at| at.elapsed() < self.every) {
            return None;
        }
        let n = self.count.swap(0, Ordering::Relaxed);
        if n == 0 {
            return None;
        }
        *said = Some(Instant::now());
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quieted_event_is_said_first_then_once_per_interval_with_its_count() {
        let quieted = Quieted::new(Duration::from_millis(200));
        assert_eq!(quieted.due(), None, "nothing happened");
        assert_eq!(quieted.count(), Some(1), "the first is said");
        for _ in 0..999 {
            assert_eq!(quieted.count(), None);
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(quieted.due(), Some(999), "then how many since");
        assert_eq!(quieted.due(), None);
    }
}

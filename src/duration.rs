//! Durations: as chrono needs them, and in words for people. An operator
//! wants a glance ("2m ago"); an email states exactly how long a code lives
//! ("90 seconds", never a rounded "1 minute").

use std::time::Duration;

use chrono::TimeDelta;

/// `duration` as a chrono delta, saturating at the largest one (settings
/// bound durations to a year, far below it).
pub fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// A unit a duration is stated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

/// `duration` exactly, in the largest unit that divides it: 60 s is
/// (1, Minute), 90 s is (90, Second), 7200 s is (2, Hour).
pub fn exact(duration: Duration) -> (u64, Unit) {
    match duration.as_secs() {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, Unit::Day),
        s if s >= 3600 && s % 3600 == 0 => (s / 3600, Unit::Hour),
        s if s >= 60 && s % 60 == 0 => (s / 60, Unit::Minute),
        s => (s, Unit::Second),
    }
}

/// `duration` rounded down to a compact figure: "41s", "2m", "3h", "2d".
/// Seconds up to two minutes, minutes up to two hours, and so on.
pub fn approximate(duration: Duration) -> String {
    match duration.as_secs() {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_durations_use_the_largest_unit_that_divides_them() {
        let cases = [
            (1, (1, Unit::Second)),
            (60, (1, Unit::Minute)),
            (90, (90, Unit::Second)),
            (300, (5, Unit::Minute)),
            (7200, (2, Unit::Hour)),
            (5400, (90, Unit::Minute)),
            (172_800, (2, Unit::Day)),
        ];
        for (seconds, expected) in cases {
            assert_eq!(exact(Duration::from_secs(seconds)), expected, "{seconds}");
        }
    }

    #[test]
    fn approximate_durations_round_down_to_a_compact_figure() {
        let cases = [
            (41, "41s"),
            (119, "119s"),
            (150, "2m"),
            (7199, "119m"),
            (10_800, "3h"),
            (200_000, "2d"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(approximate(Duration::from_secs(seconds)), expected);
        }
    }

    #[test]
    fn a_delta_saturates_instead_of_failing() {
        assert_eq!(to_delta(Duration::from_secs(60)), TimeDelta::seconds(60));
        assert_eq!(to_delta(Duration::MAX), TimeDelta::MAX);
    }
}

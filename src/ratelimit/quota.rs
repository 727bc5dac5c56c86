//! Quota periods: UTC calendar days and months, from Unix time.

use super::Period;

const SECS_PER_DAY: u64 = 86_400;

/// The period containing `now_secs`: its index (distinct for every day or
/// month) and its start and end in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub index: u64,
    pub start: u64,
    pub end: u64,
}

impl Window {
    /// The period of kind `period` containing `now_secs`.
    pub fn of(period: Period, now_secs: u64) -> Window {
        let day = now_secs / SECS_PER_DAY;
        match period {
            Period::Day => Window {
                index: day,
                start: day * SECS_PER_DAY,
                end: (day + 1).saturating_mul(SECS_PER_DAY),
            },
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                Window {
                    index: y * 12 + (m - 1),
                    start: days_from_civil(y, m) * SECS_PER_DAY,
                    end: days_from_civil(ny, nm).saturating_mul(SECS_PER_DAY),
                }
            }
        }
    }

    /// Seconds from `now_secs` to the end of the period (at least 1).
    pub fn secs_left(&self, now_secs: u64) -> u64 {
        self.end.saturating_sub(now_secs).max(1)
    }

    pub fn length(&self) -> u64 {
        self.end - self.start
    }
}

/// Days since 1970-01-01 of the first day of month `m` of year `y`.
fn days_from_civil(y: u64, m: u64) -> u64 {
    let (y, m) = (y as i64, m as i64);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468).max(0) as u64
}

/// Days past which dates are not computed (about 2.7 billion years):
/// keeps the arithmetic far from overflow for any `now`.
const MAX_DAYS: u64 = 1_000_000_000_000;

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: u64) -> (u64, u64, u64) {
    let z = z.min(MAX_DAYS) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y.max(0) as u64, m as u64, d as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time.
    fn at(y: u64, m: u64, d: u64, hms: u64) -> u64 {
        (days_from_civil(y, m) + d - 1) * SECS_PER_DAY + hms
    }

    #[test]
    fn days() {
        let now = at(2026, 11, 24, 16 * 3600 + 30);
        let w = Window::of(Period::Day, now);
        assert_eq!(w.start, at(2026, 11, 24, 0));
        assert_eq!(w.end, at(2026, 11, 25, 0));
        assert_eq!(w.secs_left(now), 8 * 3600 - 30);
        assert_eq!(w.length(), SECS_PER_DAY);
        assert_ne!(Window::of(Period::Day, w.end).index, w.index);
        assert_eq!(Window::of(Period::Day, w.end - 1).index, w.index);
    }

    #[test]
    fn months_of_every_length() {
        assert_eq!(at(1970, 1, 1, 0), 0);
        assert_eq!(at(2026, 11, 24, 0), 1_795_478_400);
        for (y, m, len) in [
            (2026, 1, 31),
            (2026, 2, 28),
            (2028, 2, 29),
            (2026, 4, 30),
            (2100, 2, 28),
            (2000, 2, 29),
        ] {
            let w = Window::of(Period::Month, at(y, m, 15, 12));
            assert_eq!(w.start, at(y, m, 1, 0), "{y}-{m}");
            assert_eq!(w.length(), len * SECS_PER_DAY, "{y}-{m}");
        }
        // 2028-02-29 belongs to February; Dec 31 23:59:59 to December.
        let leap = Window::of(Period::Month, at(2028, 2, 29, 23 * 3600));
        assert_eq!(leap.end, at(2028, 3, 1, 0));
        let dec = Window::of(Period::Month, at(2026, 12, 31, 86_399));
        assert_eq!(dec.end, at(2027, 1, 1, 0));
        assert_eq!(dec.secs_left(at(2026, 12, 31, 86_399)), 1);
        let jan = Window::of(Period::Month, dec.end);
        assert_eq!(jan.index, dec.index + 1);
        assert_eq!(jan.start, dec.end);
    }

    #[test]
    fn extreme_times_do_not_panic() {
        for now in [0, 1, u64::MAX / 2, u64::MAX] {
            let _ = Window::of(Period::Day, now).secs_left(now);
            let _ = Window::of(Period::Month, now).secs_left(now);
        }
    }
}

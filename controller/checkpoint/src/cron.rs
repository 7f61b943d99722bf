//! Crontab patterns for time triggers (UTC): the five classic fields
//! `minute hour day-of-month month day-of-week`, or six with a leading `second` field
//! (an extension, so tests and short retention intervals need not wait minutes).
//! Each field: `*`, `*/N`, `A`, `A-B`, `A-B/N`, or comma-separated lists of those.

use std::collections::BTreeSet;

/// A parse failure naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse crontab pattern {pattern:?}: {reason}")]
pub struct CronError {
    pub pattern: String,
    pub reason: String,
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: BTreeSet<u32>,
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    days: BTreeSet<u32>,
    months: BTreeSet<u32>,
    weekdays: BTreeSet<u32>,
}

fn field(s: &str, lo: u32, hi: u32) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (
                r,
                st.parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = a.parse().map_err(|_| format!("bad number in {part:?}"))?;
            let b = b.parse().map_err(|_| format!("bad number in {part:?}"))?;
            (a, b)
        } else {
            let a = range
                .parse()
                .map_err(|_| format!("bad number in {part:?}"))?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{part:?} is outside {lo}-{hi}"));
        }
        out.extend((a..=b).step_by(step as usize));
    }
    Ok(out)
}

/// (year, month, day) of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl Cron {
    pub fn parse(pattern: &str) -> Result<Cron, CronError> {
        let err = |reason: String| CronError {
            pattern: pattern.to_string(),
            reason,
        };
        let f: Vec<&str> = pattern.split_whitespace().collect();
        let (sec, rest) = match f.len() {
            5 => ("0", &f[..]),
            6 => (f[0], &f[1..]),
            n => return Err(err(format!("expected 5 or 6 fields, found {n}"))),
        };
        Ok(Cron {
            seconds: field(sec, 0, 59).map_err(err)?,
            minutes: field(rest[0], 0, 59).map_err(err)?,
            hours: field(rest[1], 0, 23).map_err(err)?,
            days: field(rest[2], 1, 31).map_err(err)?,
            months: field(rest[3], 1, 12).map_err(err)?,
            // 7 is Sunday too.
            weekdays: field(rest[4], 0, 7)
                .map_err(err)?
                .into_iter()
                .map(|d| d % 7)
                .collect(),
        })
    }

    /// The first matching second strictly after `t` (unix seconds), within four years.
    pub fn next_after(&self, t: u64) -> Option<u64> {
        let start = t + 1;
        let mut minute = start / 60;
        let end = minute + 4 * 366 * 24 * 60;
        let first_sec = (start % 60) as u32;
        let mut first = true;
        while minute < end {
            let days = (minute / 1440) as i64;
            let (_, mo, d) = civil(days);
            let wd = ((days + 4).rem_euclid(7)) as u32; // 1970-01-01 was a Thursday
            let h = ((minute / 60) % 24) as u32;
            let mi = (minute % 60) as u32;
            if !self.months.contains(&mo) || !self.days.contains(&d) || !self.weekdays.contains(&wd)
            {
                minute = (days as u64 + 1) * 1440;
                first = false;
                continue;
            }
            if !self.hours.contains(&h) {
                minute = (minute / 60 + 1) * 60;
                first = false;
                continue;
            }
            if self.minutes.contains(&mi) {
                let from = if first { first_sec } else { 0 };
                if let Some(s) = self.seconds.range(from..).next() {
                    return Some(minute * 60 + u64::from(*s));
                }
            }
            minute += 1;
            first = false;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_two_seconds_and_daily() {
        let c = Cron::parse("*/2 * * * * *").unwrap();
        assert_eq!(c.next_after(1_700_000_000), Some(1_700_000_002));
        assert_eq!(c.next_after(1_700_000_001), Some(1_700_000_002));
        // 2023-11-14T22:13:20Z -> next 09:00 is 2023-11-15T09:00:00Z.
        let d = Cron::parse("0 9 * * *").unwrap();
        assert_eq!(d.next_after(1_700_000_000), Some(1_700_038_800));
        // Mondays only: 2023-11-14 is a Tuesday; next Monday 2023-11-20T00:00:00Z.
        let m = Cron::parse("0 0 * * 1").unwrap();
        assert_eq!(m.next_after(1_700_000_000), Some(1_700_438_400));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(Cron::parse("* * *").unwrap_err().reason.contains("5 or 6"));
        assert!(Cron::parse("61 * * * *").is_err());
        assert!(Cron::parse("*/0 * * * *").is_err());
        assert!(Cron::parse("5-1 * * * *").is_err());
    }
}

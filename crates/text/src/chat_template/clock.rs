//! The date a template sees through `strftime_now(format)`. Several real templates print today's
//! date into the system prompt (Llama 3.x: `strftime_now("%d %b %Y")`), so the caller can pin it
//! for reproducible prompts; otherwise it is the current UTC time (transformers uses the local
//! time zone; we carry no time-zone database). Formatting follows glibc's `strftime`, which
//! CPython's `datetime.strftime` calls on Linux, for the directives that make sense without a
//! time zone or locale (the C locale's English names).

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// A calendar date and time of day with no time zone, like Python's naive `datetime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i32,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// Text that is not `YYYY-MM-DD[THH:MM[:SS]]` or names an impossible date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid date-time {0:?}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS")]
pub struct DateTimeParseError(String);

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl DateTime {
    /// The current time in UTC.
    pub fn now_utc() -> DateTime {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        DateTime::from_unix_seconds(i64::try_from(secs).unwrap_or(0))
    }

    /// The UTC calendar time `secs` seconds after 1970-01-01T00:00:00.
    pub fn from_unix_seconds(secs: i64) -> DateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        // Howard Hinnant's civil_from_days: eras of 400 years starting on March 1st.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        DateTime {
            year: i32::try_from(year).unwrap_or(i32::MAX),
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }

    /// Day of the year, 1..=366.
    fn ordinal(&self) -> u32 {
        (1..self.month)
            .map(|m| days_in_month(self.year, m))
            .sum::<u32>()
            + self.day
    }

    /// 0 = Sunday.
    fn weekday(&self) -> u32 {
        // Sakamoto's method.
        const T: [i32; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
        let y = if self.month < 3 {
            self.year - 1
        } else {
            self.year
        };
        let m = T[(self.month as usize - 1) % 12];
        (y + y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400) + m + self.day as i32)
            .rem_euclid(7) as u32
    }

    /// `strftime(format)` as glibc does it in the C locale. Supports the `-` flag (no padding,
    /// `%-d`) and leaves unknown directives as written.
    pub fn strftime(&self, format: &str) -> String {
        let mut out = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let no_pad = chars.next_if_eq(&'-').is_some();
            let Some(d) = chars.next() else {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                break;
            };
            let num = |out: &mut String, v: i64, width: usize| {
                let _ = if no_pad {
                    write!(out, "{v}")
                } else {
                    write!(out, "{v:0width$}")
                };
            };
            let month_name = MONTHS[(self.month as usize).saturating_sub(1) % 12];
            let weekday = WEEKDAYS[self.weekday() as usize % 7];
            let hour12 = match self.hour % 12 {
                0 => 12,
                h => h,
            };
            match d {
                'Y' => {
                    let _ = write!(out, "{}", self.year);
                }
                'y' => num(&mut out, i64::from(self.year.rem_euclid(100)), 2),
                'C' => num(&mut out, i64::from(self.year.div_euclid(100)), 2),
                'm' => num(&mut out, i64::from(self.month), 2),
                'd' => num(&mut out, i64::from(self.day), 2),
                'e' => {
                    let _ = if no_pad {
                        write!(out, "{}", self.day)
                    } else {
                        write!(out, "{:2}", self.day)
                    };
                }
                'j' => num(&mut out, i64::from(self.ordinal()), 3),
                'H' => num(&mut out, i64::from(self.hour), 2),
                'I' => num(&mut out, i64::from(hour12), 2),
                'M' => num(&mut out, i64::from(self.minute), 2),
                'S' => num(&mut out, i64::from(self.second), 2),
                'p' => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                'B' => out.push_str(month_name),
                'b' | 'h' => out.push_str(&month_name[..3]),
                'A' => out.push_str(weekday),
                'a' => out.push_str(&weekday[..3]),
                'w' => num(&mut out, i64::from(self.weekday()), 1),
                'u' => num(&mut out, i64::from((self.weekday() + 6) % 7 + 1), 1),
                'F' => {
                    let _ = write!(out, "{}-{:02}-{:02}", self.year, self.month, self.day);
                }
                'D' => {
                    let _ = write!(
                        out,
                        "{:02}/{:02}/{:02}",
                        self.month,
                        self.day,
                        self.year.rem_euclid(100)
                    );
                }
                'T' => {
                    let _ = write!(
                        out,
                        "{:02}:{:02}:{:02}",
                        self.hour, self.minute, self.second
                    );
                }
                'R' => {
                    let _ = write!(out, "{:02}:{:02}", self.hour, self.minute);
                }
                'c' => {
                    let _ = write!(
                        out,
                        "{} {} {:2} {:02}:{:02}:{:02} {}",
                        &weekday[..3],
                        &month_name[..3],
                        self.day,
                        self.hour,
                        self.minute,
                        self.second,
                        self.year
                    );
                }
                'x' => {
                    let _ = write!(
                        out,
                        "{:02}/{:02}/{:02}",
                        self.month,
                        self.day,
                        self.year.rem_euclid(100)
                    );
                }
                'X' => {
                    let _ = write!(
                        out,
                        "{:02}:{:02}:{:02}",
                        self.hour, self.minute, self.second
                    );
                }
                // A naive datetime has no zone: Python prints nothing for these.
                'z' | 'Z' => {}
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '%' => out.push('%'),
                other => {
                    out.push('%');
                    if no_pad {
                        out.push('-');
                    }
                    out.push(other);
                }
            }
        }
        out
    }
}

impl FromStr for DateTime {
    type Err = DateTimeParseError;

    /// `2026-07-26`, `2026-07-26T12:00`, `2026-07-26T12:00:00` (a space may replace the `T`).
    fn from_str(s: &str) -> Result<DateTime, DateTimeParseError> {
        let err = || DateTimeParseError(s.to_owned());
        let (date, time) = match s.split_once(['T', ' ']) {
            Some((d, t)) => (d, Some(t)),
            None => (s, None),
        };
        let num = |t: &str| -> Result<u32, DateTimeParseError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            t.parse().map_err(|_| err())
        };
        let mut d = date.splitn(3, '-');
        let (Some(y), Some(m), Some(dd)) = (d.next(), d.next(), d.next()) else {
            return Err(err());
        };
        let (year, month, day) = (num(y)?, num(m)?, num(dd)?);
        let year = i32::try_from(year).map_err(|_| err())?;
        let (mut hour, mut minute, mut second) = (0, 0, 0);
        if let Some(t) = time {
            let parts: Vec<&str> = t.split(':').collect();
            match parts.as_slice() {
                [h, m] => (hour, minute) = (num(h)?, num(m)?),
                [h, m, s] => (hour, minute, second) = (num(h)?, num(m)?, num(s)?),
                _ => return Err(err()),
            }
        }
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(err());
        }
        Ok(DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_matches_python() {
        // datetime(2026, 7, 26, 12, 0, 0).strftime(...) in CPython 3.11 on Linux.
        let t: DateTime = "2026-07-26T12:00:00".parse().unwrap();
        assert_eq!(t.strftime("%d %b %Y"), "26 Jul 2026");
        assert_eq!(t.strftime("%B %d, %Y"), "July 26, 2026");
        assert_eq!(t.strftime("%Y-%m-%d"), "2026-07-26");
        assert_eq!(
            t.strftime("%A %a %j %I%p %-d/%-m %e"),
            "Sunday Sun 207 12PM 26/7 26"
        );
        let t: DateTime = "2024-03-05T00:07:09".parse().unwrap();
        assert_eq!(
            t.strftime("%H:%M:%S %I %p %e %c %%"),
            "00:07:09 12 AM  5 Tue Mar  5 00:07:09 2024 %"
        );
    }

    #[test]
    fn unix_seconds_to_civil() {
        assert_eq!(
            DateTime::from_unix_seconds(0).to_string(),
            "1970-01-01T00:00:00"
        );
        // date -u -d @1785067200
        assert_eq!(
            DateTime::from_unix_seconds(1_785_067_200).to_string(),
            "2026-07-26T12:00:00"
        );
        assert_eq!(
            DateTime::from_unix_seconds(951_782_400).to_string(),
            "2000-02-29T00:00:00"
        );
    }

    #[test]
    fn rejects_bad_dates() {
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-07-26T24:00",
            "x",
            "2026-07-26T1:2:3:4",
        ] {
            assert!(bad.parse::<DateTime>().is_err(), "{bad}");
        }
    }
}

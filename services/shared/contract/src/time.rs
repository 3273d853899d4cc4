//! Timestamps as the legacy stores and renders them: microseconds since the Unix epoch,
//! rendered in JSON with exactly three fractional digits and a `Z`
//! (`2026-11-26T07:17:26.992Z`), stored by ActiveRecord on SQLite as text
//! (`2026-11-26 07:17:26.992507`).

use std::fmt;

/// A UTC instant with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

impl Timestamp {
    /// From microseconds since 1970-01-01T00:00:00Z.
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down).
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(MICROS_PER_SEC)
    }

    /// This instant plus `secs` seconds.
    pub const fn plus_secs(self, secs: i64) -> Self {
        Self(self.0 + secs * MICROS_PER_SEC)
    }

    /// The current time from the system clock. Only the clock implementations call this.
    pub fn now_from_system() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(d.as_micros() as i64)
    }

    fn parts(self) -> (i64, u32, u32, u32, u32, u32, u32) {
        let secs = self.0.div_euclid(MICROS_PER_SEC);
        let micros = self.0.rem_euclid(MICROS_PER_SEC) as u32;
        let days = secs.div_euclid(SECS_PER_DAY);
        let sod = secs.rem_euclid(SECS_PER_DAY) as u32;
        let (y, m, d) = civil_from_days(days);
        (y, m, d, sod / 3600, (sod / 60) % 60, sod % 60, micros)
    }

    /// ActiveSupport's JSON encoding: `YYYY-MM-DDTHH:MM:SS.mmmZ` (truncated to milliseconds).
    pub fn to_json_string(self) -> String {
        let (y, mo, d, h, mi, s, us) = self.parts();
        format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
            us / 1000
        )
    }

    /// ActiveRecord's SQLite text form: `YYYY-MM-DD HH:MM:SS.ffffff`.
    pub fn to_db_text(self) -> String {
        let (y, mo, d, h, mi, s, us) = self.parts();
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
    }

    /// Parses `YYYY-MM-DD HH:MM:SS[.f{1,9}]` (a `T` separator and a trailing `Z` are also
    /// accepted). Digits past the sixth fractional one are dropped.
    pub fn parse_db_text(text: &str) -> Option<Self> {
        let t = text.trim().trim_end_matches('Z');
        let b = t.as_bytes();
        if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        if b[10] != b' ' && b[10] != b'T' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let s = t.get(r)?;
            if s.bytes().all(|c| c.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        let mut micros = 0i64;
        if b.len() > 19 {
            if b[19] != b'.' {
                return None;
            }
            let frac = &t[20..];
            if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let mut digits: String = frac.chars().take(6).collect();
            while digits.len() < 6 {
                digits.push('0');
            }
            micros = digits.parse().ok()?;
        }
        let days = days_from_civil(y, mo as u32, d as u32);
        let secs = days * SECS_PER_DAY + h * 3600 + mi * 60 + s;
        Some(Self(secs * MICROS_PER_SEC + micros))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_string())
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_active_support() {
        let t = Timestamp::parse_db_text("2026-11-26 07:17:26.992507").unwrap();
        assert_eq!(t.to_json_string(), "2026-11-26T07:17:26.992Z");
        assert_eq!(t.to_db_text(), "2026-11-26 07:17:26.992507");
        assert_eq!(
            Timestamp::from_micros(0).to_json_string(),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn parses_variants() {
        let a = Timestamp::parse_db_text("2024-02-29T23:59:59Z").unwrap();
        assert_eq!(a.to_db_text(), "2024-02-29 23:59:59.000000");
        assert_eq!(
            Timestamp::parse_db_text("2024-02-29 23:59:59.1")
                .unwrap()
                .as_micros()
                % 1_000_000,
            100_000
        );
        assert!(Timestamp::parse_db_text("2024-13-01 00:00:00").is_none());
        assert!(Timestamp::parse_db_text("garbage").is_none());
    }

    #[test]
    fn round_trips_many_days() {
        for day in (-700_000i64..2_900_000).step_by(997) {
            let t = Timestamp::from_micros(day * SECS_PER_DAY * MICROS_PER_SEC + 123_456);
            assert_eq!(Timestamp::parse_db_text(&t.to_db_text()), Some(t));
        }
    }
}

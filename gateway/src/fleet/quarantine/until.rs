//! When a quarantine ends, as an operator writes it: a duration from now (`30m`, `2h`) or an
//! RFC 3339 time (`2026-12-05T09:00:00Z`). The command line's `--until` and the admin API's
//! `until` read it the same way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::state::pins::now_ms;

/// `text` as milliseconds since the Unix epoch, in the future; the error says what to write.
pub fn parse_until(text: &str) -> Result<i64, String> {
    let at = match humantime::parse_duration(text) {
        Ok(duration) if duration > Duration::ZERO => SystemTime::now() + duration,
        Ok(_) => return Err("the duration must be longer than zero".into()),
        Err(_) => humantime::parse_rfc3339_weak(text).map_err(|_| {
            format!(
                "{text:?} is neither a duration (`30m`, `2h`) nor an RFC 3339 time \
                 (`2026-12-05T09:00:00Z`)"
            )
        })?,
    };
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the time is before 1970".to_owned())?
        .as_millis();
    let ms = i64::try_from(ms).map_err(|_| "the time is too far away".to_owned())?;
    if ms <= now_ms() {
        return Err(format!("{text:?} is in the past"));
    }
    Ok(ms)
}

/// `ms` since the Unix epoch as an RFC 3339 time to the second.
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_durations_and_times_and_refuses_the_past() {
        let in_an_hour = parse_until("1h").unwrap();
        assert!((in_an_hour - now_ms() - 3_600_000).abs() < 5_000);
        assert_eq!(
            parse_until("2999-01-01T00:00:00Z").unwrap(),
            32_472_144_000_000
        );
        assert!(
            parse_until("2020-01-01T00:00:00Z")
                .unwrap_err()
                .contains("in the past")
        );
        assert!(parse_until("0s").unwrap_err().contains("longer than zero"));
        assert!(
            parse_until("soon")
                .unwrap_err()
                .contains("neither a duration")
        );
    }
}

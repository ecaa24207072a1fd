//! Durations written as a whole number and a unit: `500ms`, `30s`, `5m`,
//! `2h`, `1d`.

use std::time::Duration;

/// Parses a duration such as `30s`; the error says what was expected.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid duration {text:?}: expected a whole number and a unit (ms, s, m, h, d), as in 30s"
        )
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid()),
    };
    let millis = number
        .checked_mul(millis_per_unit)
        .ok_or_else(|| format!("invalid duration {text:?}: too long"))?;
    Ok(Duration::from_millis(millis))
}

/// Writes a duration the way [`parse`] reads it, in its two largest units,
/// the smaller rounded to the nearest: `250ms`, `42s`, `2m5s`, `2h1m`, `3d`,
/// `2d5h`. A lease of three days seen a second later is still `3d`.
pub(crate) fn show(duration: Duration) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 3_600;
    const DAY: u64 = 86_400;
    let secs = duration.as_secs();
    let rounded = |unit: u64| (duration.as_secs_f64() / unit as f64).round() as u64 * unit;
    let two = |big: u64, big_name: &str, small: u64, small_name: &str, total: u64| {
        let (b, s) = (total / big, (total % big) / small);
        if s == 0 {
            format!("{b}{big_name}")
        } else {
            format!("{b}{big_name}{s}{small_name}")
        }
    };
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        s if s < MINUTE => format!("{s}s"),
        s if s < HOUR => two(MINUTE, "m", 1, "s", s),
        s if s < DAY => match rounded(MINUTE) {
            total if total >= DAY => "1d".to_owned(),
            total => two(HOUR, "h", MINUTE, "m", total),
        },
        _ => two(DAY, "d", HOUR, "h", rounded(HOUR)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn nonsense_is_refused() {
        for text in [
            "",
            "s",
            "30",
            "30 s",
            "-1s",
            "1.5s",
            "3w",
            "99999999999999999999d",
        ] {
            assert!(parse(text).is_err(), "{text:?}");
        }
        assert!(
            parse("18446744073709551615d")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn shown_as_read() {
        assert_eq!(show(Duration::from_millis(250)), "250ms");
        assert_eq!(show(Duration::from_secs(42)), "42s");
        assert_eq!(show(Duration::from_secs(125)), "2m5s");
        assert_eq!(show(Duration::from_secs(7260)), "2h1m");
        assert_eq!(show(Duration::from_secs(172_800)), "2d");
        assert_eq!(show(Duration::from_secs(3 * 86_400 - 1)), "3d");
        assert_eq!(
            show(Duration::from_secs(2 * 86_400 + 5 * 3_600 + 60)),
            "2d5h"
        );
        assert_eq!(show(Duration::from_secs(86_400 - 10)), "1d");
        assert_eq!(show(Duration::from_secs(3_600)), "1h");
        assert_eq!(show(Duration::from_secs(60)), "1m");
    }
}

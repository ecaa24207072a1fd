//! Durations as the command line takes them: a number of seconds (`5`,
//! `0.5`), or a number and a unit (`500ms`, `1.25s`, `2m`, `1h`, `1d`).

use std::time::Duration;

/// The units a duration may be written in, with their length in
/// nanoseconds; a number without a unit is seconds.
const UNITS: [(&str, u128); 5] = [
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Digits after the point that are read; later ones are below a nanosecond
/// in every unit, and are ignored.
const FRACTION_DIGITS: usize = 18;

/// Parses a duration such as `30s`, `0.5` or `1.25h`; the error says what
/// was expected (the argument parser names the argument and the text).
/// Anything below a nanosecond is dropped.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || {
        "not a duration: expected seconds (5, 0.5) or a number and a unit \
         (500ms, 1.25s, 2m, 1h, 1d)"
            .to_owned()
    };
    if text.starts_with('-') {
        return Err("a duration cannot be negative".to_owned());
    }
    let number_len = text
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, unit) = text.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(fraction) {
        return Err(invalid());
    }
    let nanos_per_unit = match unit {
        "" => 1_000_000_000,
        unit => UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, nanos)| *nanos)
            .ok_or_else(invalid)?,
    };
    let too_long = || "the duration is too long".to_owned();
    // Whole units, then the fraction's digits as a fraction of a unit, in
    // exact integer arithmetic: 0.1s is exactly 100ms.
    let whole: u128 = match whole {
        "" => 0,
        whole => whole.parse().map_err(|_| too_long())?,
    };
    let fraction = &fraction[..fraction.len().min(FRACTION_DIGITS)];
    let scale = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| invalid())?);
    let fraction: u128 = match fraction {
        "" => 0,
        fraction => fraction.parse().map_err(|_| invalid())?,
    };
    let nanos = whole
        .checked_mul(nanos_per_unit)
        .and_then(|n| n.checked_add(fraction * nanos_per_unit / scale))
        .ok_or_else(too_long)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    let subsec = u32::try_from(nanos % 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, subsec))
}

/// A duration for a lease (`--ttl`): longer than zero, since a lease of
/// zero would end before it began.
pub(crate) fn parse_lease(text: &str) -> Result<Duration, String> {
    let lease = parse(text)?;
    if lease.is_zero() {
        return Err("a lease must be longer than zero".to_owned());
    }
    Ok(lease)
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
    fn a_bare_number_is_seconds() {
        assert_eq!(parse("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse(".25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("3."), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn fractions_are_exact() {
        assert_eq!(parse("1.25s"), Ok(Duration::from_millis(1250)));
        assert_eq!(parse("0.1"), Ok(Duration::from_millis(100)));
        assert_eq!(parse("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse("0.5m"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0.25d"), Ok(Duration::from_secs(21_600)));
        assert_eq!(parse("0.000000001"), Ok(Duration::from_nanos(1)));
        // Below a nanosecond is dropped, however many digits are written.
        assert_eq!(
            parse("1.0000000000000000000000000001"),
            Ok(Duration::from_secs(1))
        );
        assert_eq!(parse("0.0000000001s"), Ok(Duration::ZERO));
    }

    #[test]
    fn nonsense_is_refused() {
        for text in [
            "", "s", ".", "..5", "1.2.3", "30 s", " 30s", "30s ", "1.5 s", "3w", "1e3", "1e400",
            "NaN", "nan", "inf", "infinity", "+5", "0x10", "5sec", "ms5", "½",
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains("not a duration"), "{text:?}: {error}");
        }
    }

    #[test]
    fn negative_durations_are_refused() {
        for text in ["-1", "-1s", "-0.5", "-0"] {
            assert!(parse(text).unwrap_err().contains("negative"), "{text:?}");
        }
    }

    #[test]
    fn overflow_is_refused() {
        for text in [
            "99999999999999999999d",
            "18446744073709551615d",
            "18446744073709551616",
            "999999999999999999999999999999999999999999999",
        ] {
            assert!(parse(text).unwrap_err().contains("too long"), "{text:?}");
        }
        // The longest a Duration holds is still read.
        assert_eq!(parse("18446744073709551615.999999999"), Ok(Duration::MAX));
        assert_eq!(
            parse("99999999999d"),
            Ok(Duration::from_secs(99_999_999_999 * 86_400))
        );
    }

    #[test]
    fn a_lease_is_longer_than_zero() {
        for text in ["0", "0s", "0.0", "0ms", "0.0000000001"] {
            assert!(
                parse_lease(text).unwrap_err().contains("longer than zero"),
                "{text:?}"
            );
        }
        assert_eq!(parse_lease("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_lease("abc").unwrap_err().contains("not a duration"));
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

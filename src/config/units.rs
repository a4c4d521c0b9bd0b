//! Sizes and durations: parsing and printing.
//!
//! Sizes: an integer is a number of bytes; a string is a whole number and a binary unit
//! ("512 B", "64 KiB", "16MiB", "1 GiB", "1 TiB"; unit case-insensitive except "B").
//! Decimal units (KB, MB, GB, K, M, ...) are refused as ambiguous: half the world reads
//! "1 MB" as 1,000,000 bytes and the other half as 1,048,576; a policy file must not guess.
//!
//! Durations: a string with a whole number and a unit "ms", "s", "m", "h" or "d" ("500ms",
//! "10s", "5 m", "1h", "30d"). A bare integer is refused: "10" could mean seconds or
//! milliseconds. Printed in ms, s, m or h (a day as "24h").

use std::time::Duration;

const SIZE_UNITS: &[(&str, u64)] = &[
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

const AMBIGUOUS_UNITS: &[(&str, &str)] = &[
    ("k", "KiB"),
    ("kb", "KiB"),
    ("m", "MiB"),
    ("mb", "MiB"),
    ("g", "GiB"),
    ("gb", "GiB"),
    ("t", "TiB"),
    ("tb", "TiB"),
];

/// Split "64 KiB" into (64, "KiB"); the error says how to write it.
fn split_number<'a>(s: &'a str, example: &str) -> Result<(u64, &'a str), String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, rest) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "\"{s}\" is not a whole number with a unit; write e.g. {example}"
        ));
    }
    if rest.starts_with(['.', ',']) {
        return Err(format!(
            "\"{s}\" has a fraction; write a whole number in a smaller unit, e.g. {example}"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("\"{s}\" is too large"))?;
    Ok((n, rest.trim_start()))
}

/// Parse a size string into bytes.
pub(super) fn parse_size(s: &str) -> Result<u64, String> {
    let example = "\"64 KiB\", \"1 MiB\" or a number of bytes";
    let (n, unit) = split_number(s, example)?;
    let factor = if unit.is_empty() || unit == "B" {
        1
    } else if let Some((_, f)) = SIZE_UNITS
        .iter()
        .find(|(u, _)| u.eq_ignore_ascii_case(unit))
    {
        *f
    } else if let Some((_, binary)) = AMBIGUOUS_UNITS
        .iter()
        .find(|(u, _)| u.eq_ignore_ascii_case(unit))
    {
        return Err(format!(
            "unit \"{unit}\" in \"{s}\" is ambiguous (1000 or 1024?); write \"{n} {binary}\" \
             for the binary unit or give a number of bytes"
        ));
    } else {
        return Err(format!(
            "unknown size unit \"{unit}\" in \"{s}\"; use B, KiB, MiB, GiB or TiB, e.g. {example}"
        ));
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("\"{s}\" is too large"))
}

/// Parse a duration string; see the module comment for the accepted forms.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let example = "\"500ms\", \"10s\", \"5m\", \"1h\" or \"1d\"";
    let (n, unit) = split_number(s, example)?;
    let too_large = || format!("\"{s}\" is too large");
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(too_large),
        "h" => n
            .checked_mul(3600)
            .map(Duration::from_secs)
            .ok_or_else(too_large),
        "d" => n
            .checked_mul(86_400)
            .map(Duration::from_secs)
            .ok_or_else(too_large),
        "" => Err(format!(
            "\"{s}\" has no unit; write e.g. \"{n}s\" or \"{n}ms\""
        )),
        _ => Err(format!(
            "unknown duration unit \"{unit}\" in \"{s}\"; use ms, s, m, h or d, e.g. {example}"
        )),
    }
}

/// Print a size in the largest binary unit that divides it exactly ("64 KiB", "512 B").
pub fn format_size(bytes: u64) -> String {
    SIZE_UNITS
        .iter()
        .rev()
        .find(|(_, f)| bytes >= *f && bytes.is_multiple_of(*f))
        .map_or_else(
            || format!("{bytes} B"),
            |(u, f)| format!("{} {u}", bytes / f),
        )
}

/// Print a duration in the largest unit that divides it exactly ("10s", "500ms", "5m").
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 || !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64 KiB"), Ok(65536));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512 B"), Ok(512));
        assert_eq!(parse_size("1 gib"), Ok(1 << 30));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1 MB").unwrap_err().contains("ambiguous"));
        assert!(parse_size("1.5 MiB").unwrap_err().contains("fraction"));
        assert!(parse_size("lots").unwrap_err().contains("whole number"));
        assert!(parse_size("1 XB")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse_size("99999999999 TiB")
            .unwrap_err()
            .contains("too large"));
        for n in [
            1,
            512,
            1024,
            1536,
            65536,
            1 << 20,
            3 << 30,
            1 << 40,
            5 << 40,
        ] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
        assert_eq!(format_size(65536), "64 KiB");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5 m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("10 sec")
            .unwrap_err()
            .contains("unknown duration unit"));
        assert!(parse_duration("1.5s").unwrap_err().contains("fraction"));
        for ms in [0, 1, 500, 1000, 1500, 10_000, 60_000, 90_000, 3_600_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{ms}");
        }
    }
}

//! Times as operators type and read them: RFC 3339, or a duration back from now.

use anyhow::{Context, Result};

use crate::runtime;

/// Parses RFC 3339 or a relative duration back from now (`30s`, `15m`, `2h`, `1d`) into ms
/// since the epoch.
pub fn parse_time(s: &str) -> Result<i64> {
    let s = s.trim();
    if let Some(unit) = s.chars().last().filter(|c| "smhd".contains(*c))
        && let Ok(n) = s[..s.len() - 1].parse::<i64>()
    {
        let secs = match unit {
            's' => n,
            'm' => n * 60,
            'h' => n * 3600,
            _ => n * 86_400,
        };
        return Ok(runtime::now_ms() - secs * 1000);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("'{s}' is neither RFC 3339 nor a duration like 15m, 2h, 1d"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// ms since the epoch as RFC 3339 (UTC).
pub fn format_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_times() {
        let now = runtime::now_ms();
        let t = parse_time("15m").unwrap();
        assert!((now - 15 * 60_000 - t).abs() < 5_000);
        assert_eq!(
            parse_time("2024-05-01T00:00:00Z").unwrap(),
            1_714_521_600_000
        );
        assert_eq!(format_time(1_714_521_600_000), "2024-05-01T00:00:00Z");
        assert!(parse_time("yesterday").is_err());
    }
}

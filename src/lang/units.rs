//! Durations, sizes and rates as workflows and `hookflow.yaml` write them (`30s`, `5m`,
//! `10MiB`, `50/s`).

use std::time::Duration;

/// `500ms`, `30s`, `5m`, `1h`, `2d`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// `1024`, `512KiB`, `1MiB`, `10MB`, `1GiB`.
pub fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "kib" | "k" => 1024.0,
        "mb" => 1e6,
        "mib" | "m" => 1024.0 * 1024.0,
        "gb" => 1e9,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as usize)
}

/// `50/s`, `600/m`, `1000/h` as events per second: the webhook's `rate_limit`, a step's, and
/// `rate_limits` in `hookflow.yaml` read rates alike. A zero or negative count is no rate.
pub fn parse_rate(text: &str) -> Option<f64> {
    let (count, unit) = text.trim().split_once('/')?;
    let count: f64 = count.trim().parse().ok()?;
    let seconds = match unit.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return None,
    };
    (count.is_finite() && count > 0.0).then_some(count / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
        // Too long for a Duration: refused, not a panic at load.
        assert_eq!(parse_duration("99999999999999999999d"), None);
        assert_eq!(parse_size("1MiB"), Some(1024 * 1024));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10/s"), Some(10.0));
        assert_eq!(parse_rate(" 600 / min "), Some(10.0));
        assert_eq!(parse_rate("3600/h"), Some(1.0));
        assert_eq!(parse_rate("0.5/s"), Some(0.5));
        assert_eq!(parse_rate("10/x"), None);
        assert_eq!(parse_rate("0/s"), None);
        assert_eq!(parse_rate("-1/s"), None);
        assert_eq!(parse_rate("ten/s"), None);
        assert_eq!(parse_rate("10"), None);
    }
}
